package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import io.micrometer.core.instrument.MeterRegistry;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.function.ToIntBiFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Stops sandboxes nobody calls: a running worker whose UDF has had no call for its {@code
 * auto_suspend} is suspended — its sandboxes stop, its image stays — and the next query resumes it
 * when its {@code auto_resume} allows ({@link WorkerService}, {@link KnownUdfs}); a UDF asked for
 * without a worker (ApplyUdfResource) stops after the server's {@code --auto-suspend}, and an
 * earlier version of a worker's UDF (still callable by a query bound to it) after {@link
 * WorkerService#RETIRE_AFTER} without calls. Their definitions stay, so the next call starts them
 * again. A resource computing a batch is never stopped. {@link #sweep} runs on a schedule; time is
 * injected. When the node's sandbox budget has no room for a new sandbox, {@link #reclaimOne} stops
 * the least recently used idle one in the same way. With {@code --kubernetes}, a worker idle on
 * this replica while another serves it loses this replica's sandboxes and stays running; the last
 * replica to find it idle suspends it.
 */
final class IdleSuspender {
  private static final Logger log = LoggerFactory.getLogger(IdleSuspender.class);

  private final Workers workers;
  private final UdfRegistry registry;
  private final WorkerSizes sizes;
  private final Duration defaultAutoSuspend;
  private final ToIntBiFunction<Tenant, ContentKey> podsElsewhere;
  private final InstantSource clock;
  private final MeterRegistry meters;

  IdleSuspender(
      Workers workers,
      UdfRegistry registry,
      WorkerSizes sizes,
      Duration defaultAutoSuspend,
      ToIntBiFunction<Tenant, ContentKey> podsElsewhere,
      InstantSource clock,
      MeterRegistry meters) {
    this.workers = workers;
    this.registry = registry;
    this.sizes = sizes;
    this.defaultAutoSuspend = defaultAutoSuspend;
    this.podsElsewhere = podsElsewhere;
    this.clock = clock;
    this.meters = meters;
  }

  /**
   * Stops the least recently used idle resource to make room in the node's budget; returns what
   * completes when its sandbox is gone, or empty when every resource is busy or starting.
   */
  Optional<CompletableFuture<Void>> reclaimOne() {
    Instant now = clock.instant();
    UdfResource oldest = null;
    Instant oldestAt = null;
    for (UdfResource r : registry.all()) {
      Optional<Instant> last = r.lastActivity();
      if (last.isEmpty() || r.isBusy() || r.sandbox().isEmpty()) {
        continue;
      }
      if (oldest == null || last.get().isBefore(oldestAt)) {
        oldest = r;
        oldestAt = last.get();
      }
    }
    if (oldest == null) {
      return Optional.empty();
    }
    CompletableFuture<Void> gone = oldest.sandbox().get().stopped();
    registry.evict(oldest);
    stopped("budget");
    log.info(
        "udf {} tenant={} stopped to make room in the node's sandbox budget (idle {} s); the next"
            + " call starts it again",
        oldest.key.shortForm(),
        oldest.tenant,
        Duration.between(oldestAt, now).toSeconds());
    return Optional.of(gone);
  }

  private void stopped(String reason) {
    meters.counter("kiln.sandbox.stops", "reason", reason).increment();
  }

  /** Suspends every running worker and stops every other resource idle long enough; how many. */
  int sweep() {
    Instant now = clock.instant();
    return sweepWorkers(now) + sweepOthers(now);
  }

  private int sweepWorkers(Instant now) {
    int suspended = 0;
    for (Map.Entry<String, List<Workers.Worker>> tenant : workers.all().entrySet()) {
      Tenant t = new Tenant(tenant.getKey());
      for (Workers.Worker w : tenant.getValue()) {
        if (w.state() != Workers.State.RUNNING || w.key() == null) {
          continue;
        }
        Duration after = autoSuspend(w);
        if (after == null || after.isZero()) {
          continue;
        }
        Optional<UdfResource> current = registry.get(t, new ContentKey(w.key()));
        if (current.isEmpty() || !idleFor(current.get(), after, now)) {
          continue;
        }
        // Stop first, then say so: whoever sees "suspended" finds the sandboxes gone.
        int stopped = registry.evictOwned(t, w.name(), null);
        stopped("idle");
        if (podsElsewhere.applyAsInt(t, current.get().key) > 0) {
          // Idle here, busy on another replica (--kubernetes): the worker runs on.
          log.info(
              "worker {} tenant={}: {} sandbox(es) stopped here after {} s without calls; another"
                  + " Kiln replica serves it, so it stays running",
              w.name(),
              t,
              stopped,
              after.toSeconds());
          continue;
        }
        workers.update(
            t,
            w.name(),
            x ->
                x == null || x.state() != Workers.State.RUNNING
                    ? x
                    : x.withState(Workers.State.SUSPENDED, now));
        log.info(
            "worker {} tenant={} suspended after {} s without calls ({} sandbox(es) stopped)",
            w.name(),
            t,
            after.toSeconds(),
            stopped);
        suspended++;
      }
    }
    return suspended;
  }

  /** Resources without a worker, and earlier versions of a worker's UDF. */
  private int sweepOthers(Instant now) {
    int stopped = 0;
    for (UdfResource r : registry.all()) {
      Duration after;
      if (r.owner == null) {
        after = defaultAutoSuspend;
      } else {
        Workers.Worker w = workers.get(r.tenant, r.owner).orElse(null);
        if (w == null || r.key.hex().equals(w.key())) {
          continue; // the worker's current version: its auto_suspend decides
        }
        after = WorkerService.RETIRE_AFTER;
      }
      if (after.isZero() || !idleFor(r, after, now)) {
        continue;
      }
      registry.evict(r);
      stopped(r.owner == null ? "idle" : "retired");
      log.info(
          "udf {} tenant={}{} stopped after {} s without calls; the next call starts it again",
          r.key.shortForm(),
          r.tenant,
          r.owner == null ? "" : " (an earlier version of worker " + r.owner + ")",
          after.toSeconds());
      stopped++;
    }
    return stopped;
  }

  /** The worker's auto_suspend, or null when its options no longer parse. */
  private Duration autoSuspend(Workers.Worker w) {
    try {
      return WorkerOptions.parse(w.options(), sizes, defaultAutoSuspend).autoSuspend();
    } catch (KilnException e) {
      return null; // options checked when they were set; a size gone from the table since
    }
  }

  /** Ready, computing nothing, and without a call for {@code after}. */
  private static boolean idleFor(UdfResource r, Duration after, Instant now) {
    Optional<Instant> last = r.lastActivity();
    return last.isPresent()
        && !r.isBusy()
        && Duration.between(last.get(), now).compareTo(after) >= 0;
  }
}
