package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executor;
import java.util.function.ToIntBiFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A busy worker's UDF gets more sandboxes: when every sandbox of it is busy (calls queue, as with
 * Databend's 256 mini-batches in flight), another is started from the same image, up to the
 * worker's {@code max_cluster_count}; one added sandbox idle for {@code scaleDownAfter} is stopped
 * again at each {@link #sweep}, never below {@code min_cluster_count}, which is also started as
 * soon as the first sandbox is ready. The Flight endpoint spreads calls over them ({@link
 * UdfResource#next}). One addition at a time per resource; each sandbox has the worker's size and
 * counts against the node budget (a full budget means no addition, logged once per resource). UDFs
 * without a worker run in one sandbox. With {@code --kubernetes}, the bounds count the pods other
 * Kiln replicas hold of the same UDF too.
 */
final class Scaler {
  private static final Logger log = LoggerFactory.getLogger(Scaler.class);

  /** Fewest and most sandboxes of one resource. */
  record Scale(int min, int max) {
    static final Scale ONE = new Scale(1, 1);
  }

  private final Pipeline pipeline;
  private final Workers workers;
  private final WorkerSizes sizes;
  private final Duration defaultAutoSuspend;
  private final Executor executor;
  private final Duration scaleDownAfter;
  private final ToIntBiFunction<Tenant, ContentKey> podsElsewhere;
  private final InstantSource clock;
  private final Set<UdfResource> adding = ConcurrentHashMap.newKeySet();
  private final Set<UdfResource> refused = ConcurrentHashMap.newKeySet();
  private final java.util.Map<Provisioned, Instant> addedAt = new ConcurrentHashMap<>();

  Scaler(
      Pipeline pipeline,
      Workers workers,
      WorkerSizes sizes,
      Duration defaultAutoSuspend,
      Executor executor,
      Duration scaleDownAfter,
      ToIntBiFunction<Tenant, ContentKey> podsElsewhere,
      InstantSource clock) {
    this.pipeline = pipeline;
    this.workers = workers;
    this.sizes = sizes;
    this.defaultAutoSuspend = defaultAutoSuspend;
    this.executor = executor;
    this.scaleDownAfter = scaleDownAfter;
    this.podsElsewhere = podsElsewhere;
    this.clock = clock;
  }

  /** Watches a new resource: more sandboxes when all are busy, its minimum once it is ready. */
  void attach(UdfResource r) {
    if (r.owner == null) {
      return;
    }
    r.onAllBusy(this::allBusy);
    r.ready().thenRun(() -> executor.execute(() -> ensureMinimum(r)));
  }

  /** The worker's current min and max (ALTER WORKER applies to running UDFs too). */
  Scale scale(UdfResource r) {
    if (r.owner == null) {
      return Scale.ONE;
    }
    Optional<Workers.Worker> w = workers.get(r.tenant, r.owner);
    if (w.isEmpty()) {
      return Scale.ONE;
    }
    try {
      WorkerOptions o = WorkerOptions.parse(w.get().options(), sizes, defaultAutoSuspend);
      return new Scale(o.minClusterCount(), o.maxClusterCount());
    } catch (KilnException e) {
      return Scale.ONE;
    }
  }

  private void allBusy(UdfResource r) {
    if (r.isClosed() || count(r) >= scale(r).max() || !adding.add(r)) {
      return;
    }
    executor.execute(
        () -> {
          try {
            add(r, "every sandbox is busy");
          } finally {
            adding.remove(r);
          }
        });
  }

  private void ensureMinimum(UdfResource r) {
    if (!adding.add(r)) {
      return;
    }
    try {
      while (!r.isClosed() && count(r) < scale(r).min()) {
        if (!add(r, "min_cluster_count")) {
          return;
        }
      }
    } finally {
      adding.remove(r);
    }
  }

  /**
   * The resource's sandboxes: this server's, plus those other Kiln replicas hold (pods, with {@code
   * --kubernetes}); the worker's bounds are for all of them.
   */
  private int count(UdfResource r) {
    return r.sandboxCount() + podsElsewhere.applyAsInt(r.tenant, r.key);
  }

  private boolean add(UdfResource r, String why) {
    try {
      long t0 = System.nanoTime();
      Provisioned p = pipeline.addSandbox(r);
      addedAt.put(p, clock.instant());
      r.addSandbox(p);
      refused.remove(r);
      log.info(
          "udf {} tenant={} worker={}: sandbox {} added in {} ms ({}); {} now",
          r.key.shortForm(),
          r.tenant,
          r.owner,
          p.sandbox().id(),
          (System.nanoTime() - t0) / 1_000_000,
          why,
          r.sandboxCount());
      return true;
    } catch (KilnException e) {
      if (refused.add(r)) {
        log.info(
            "udf {} tenant={} worker={}: no sandbox added ({}): {}",
            r.key.shortForm(),
            r.tenant,
            r.owner,
            why,
            e.getMessage());
      }
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
  }

  /** Stops added sandboxes idle for {@code scaleDownAfter}, keeping the minimum; how many. */
  int sweep(Iterable<UdfResource> resources) {
    Instant now = clock.instant();
    addedAt.keySet().removeIf(p -> !p.sandbox().isRunning());
    int stopped = 0;
    for (UdfResource r : resources) {
      for (Provisioned p : r.extraSandboxes()) {
        if (count(r) <= scale(r).min()) {
          break;
        }
        var stats = p.pool().stats();
        Instant last = stats.lastRequestTime();
        if (last == null) {
          last = addedAt.getOrDefault(p, now);
        }
        if (stats.inFlight() > 0 || Duration.between(last, now).compareTo(scaleDownAfter) < 0) {
          continue;
        }
        r.removeSandbox(p);
        addedAt.remove(p);
        stopped++;
        log.info(
            "udf {} tenant={} worker={}: sandbox {} stopped after {} s without calls; {} now",
            r.key.shortForm(),
            r.tenant,
            r.owner,
            p.sandbox().id(),
            scaleDownAfter.toSeconds(),
            r.sandboxCount());
      }
    }
    return stopped;
  }
}
