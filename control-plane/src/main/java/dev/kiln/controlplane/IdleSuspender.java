package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Acts on {@code auto_suspend}: a running worker whose UDF has had no call for that long is
 * suspended — its sandboxes stop, its image stays — and the next query resumes it when its {@code
 * auto_resume} allows ({@link WorkerService}). {@link #sweep} runs on a schedule; time is injected.
 */
final class IdleSuspender {
  private static final Logger log = LoggerFactory.getLogger(IdleSuspender.class);

  private final Workers workers;
  private final UdfRegistry registry;
  private final WorkerSizes sizes;
  private final Duration defaultAutoSuspend;
  private final InstantSource clock;

  IdleSuspender(
      Workers workers,
      UdfRegistry registry,
      WorkerSizes sizes,
      Duration defaultAutoSuspend,
      InstantSource clock) {
    this.workers = workers;
    this.registry = registry;
    this.sizes = sizes;
    this.defaultAutoSuspend = defaultAutoSuspend;
    this.clock = clock;
  }

  /** Suspends every running worker idle for its {@code auto_suspend}; returns how many. */
  int sweep() {
    int suspended = 0;
    Instant now = clock.instant();
    for (Map.Entry<String, List<Workers.Worker>> tenant : workers.all().entrySet()) {
      Tenant t = new Tenant(tenant.getKey());
      for (Workers.Worker w : tenant.getValue()) {
        if (w.state() != Workers.State.RUNNING || w.key() == null) {
          continue;
        }
        Duration after;
        try {
          after = WorkerOptions.parse(w.options(), sizes, defaultAutoSuspend).autoSuspend();
        } catch (KilnException e) {
          continue; // options checked when they were set; a size gone from the table since
        }
        if (after.isZero()) {
          continue;
        }
        Optional<Instant> last =
            registry.get(t, new ContentKey(w.key())).flatMap(UdfResource::lastActivity);
        if (last.isEmpty() || Duration.between(last.get(), now).compareTo(after) < 0) {
          continue;
        }
        // Stop first, then say so: whoever sees "suspended" finds the sandboxes gone.
        int stopped = registry.evictOwned(t, w.name(), null);
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
}
