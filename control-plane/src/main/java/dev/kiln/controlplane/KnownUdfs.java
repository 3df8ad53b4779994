package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import dev.kiln.worker.UdfDirectory;
import dev.kiln.worker.UdfHandle;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import java.time.Duration;
import java.time.InstantSource;
import java.util.Optional;

/**
 * What the Flight endpoint finds for a token: the tenant's running resource for the key (a map
 * lookup), or — when none is running because the server restarted, the UDF was suspended for being
 * idle, or its sandbox died — the resource started again from its kept definition, which the call
 * then waits for like any cold call. A UDF of a worker starts again only as its worker allows: not
 * when the worker was dropped, and when suspended only with {@code auto_resume}. With several
 * replicas, a UDF whose worker another replica keeps the record of starts here from the shared
 * definition (dropping the worker there forgets that definition).
 */
final class KnownUdfs implements UdfDirectory {
  private final UdfRegistry registry;
  private final Definitions definitions;
  private final UdfRequests requests;
  private final Workers workers;
  private final WorkerSizes sizes;
  private final Duration defaultAutoSuspend;
  private final UdfEnv udfEnv;
  private final InstantSource clock;
  private final Counter startedAgain;

  KnownUdfs(
      UdfRegistry registry,
      Definitions definitions,
      UdfRequests requests,
      Workers workers,
      WorkerSizes sizes,
      Duration defaultAutoSuspend,
      UdfEnv udfEnv,
      InstantSource clock,
      MeterRegistry meters) {
    this.registry = registry;
    this.definitions = definitions;
    this.requests = requests;
    this.workers = workers;
    this.sizes = sizes;
    this.defaultAutoSuspend = defaultAutoSuspend;
    this.udfEnv = udfEnv;
    this.clock = clock;
    this.startedAgain =
        Counter.builder("kiln.udf.started.again")
            .description(
                "UDFs started again for a call: after a restart, an idle stop or a lost sandbox")
            .register(meters);
  }

  @Override
  public Optional<UdfHandle> find(Tenant tenant, ContentKey key) throws KilnException {
    Optional<UdfResource> running = registry.get(tenant, key);
    if (running.isPresent() && !running.get().isStale()) {
      return Optional.of(running.get());
    }
    Optional<Definitions.Entry> kept = definitions.get(tenant, key);
    if (kept.isEmpty()) {
      return running.map(r -> r);
    }
    Definitions.Entry e = kept.get();
    UdfEnv.Entry env = UdfEnv.Entry.NONE;
    if (e.owner() != null) {
      Optional<Workers.Worker> w = workers.get(tenant, e.owner());
      if (w.isPresent()) {
        WorkerOptions options = WorkerOptions.parse(w.get().options(), sizes, defaultAutoSuspend);
        workers.resumeIfSuspended(tenant, w.get(), options.autoResume(), clock.instant());
      } else {
        throw new KilnException(
            ErrorCode.WORKER_NOT_FOUND,
            "the worker "
                + e.owner()
                + " of this UDF was dropped; run the query again so Databend"
                + " asks Kiln for the UDF again");
      }
      env = udfEnv.get(tenant, e.owner());
    }
    UdfRegistry.Obtained obtained = requests.revive(e, env);
    if (obtained.created()) {
      startedAgain.increment();
    }
    return Optional.of(obtained.resource());
  }
}
