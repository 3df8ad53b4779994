package dev.kiln.provisioner;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sandboxes kept ready for the package sets in use (zygotes): one warm sandbox per key (a lock of
 * packages, with the size of its sandboxes) whose processes have imported the packages, so the next
 * new UDF of that set skips both the sandbox start and the imports. A key is kept from the first
 * time it is {@link #offer offered}; beyond {@code keys} keys the least recently used one is
 * dropped with its sandbox. Each key is a {@link SandboxPool} of one: refilled in the background
 * after a take, inside the node budget, and discarded first when a start needs room.
 */
public final class Zygotes implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(Zygotes.class);

  /** What the zygotes hold and did: for metrics. */
  public record Stats(int keys, int ready, long hits, long misses) {}

  /** A ready zygote and the label its key was offered with: for {@code kiln ps}. */
  public record Ready(String label, Sandbox sandbox) {}

  /** A kept key's pool and what it holds, for people. */
  private record Kept(SandboxPool pool, String label) {}

  private final PlaceSandbox places;
  private final SandboxPool.Warmer warmer;
  private final int keys;
  // Access order: the first entry is the least recently offered or taken.
  private final Map<String, Kept> pools = new LinkedHashMap<>(16, 0.75f, true);
  private volatile BooleanSupplier busy = () -> false;
  private volatile BooleanSupplier serving = () -> false;
  private volatile Duration maxDefer = Duration.ZERO;
  private boolean closed;
  private long hits;
  private long misses;

  /**
   * @param places starts the sandboxes (inside the node budget)
   * @param warmer waits until each started process is warm (its imports done)
   * @param keys how many package sets get a zygote
   */
  public Zygotes(PlaceSandbox places, SandboxPool.Warmer warmer, int keys) {
    if (keys < 1) {
      throw new IllegalArgumentException("zygotes are kept for at least one key, got " + keys);
    }
    this.places = Objects.requireNonNull(places, "places");
    this.warmer = Objects.requireNonNull(warmer, "warmer");
    this.keys = keys;
  }

  /** Refills wait while {@code busy} holds, as the warm pool's do. */
  public void yieldTo(BooleanSupplier busy) {
    this.busy = Objects.requireNonNull(busy, "busy");
  }

  /** Refills wait while {@code serving} holds, at most {@code maxDefer} each, as the pool's do. */
  public void deferWhile(BooleanSupplier serving, Duration maxDefer) {
    this.serving = Objects.requireNonNull(serving, "serving");
    this.maxDefer = Objects.requireNonNull(maxDefer, "maxDefer");
  }

  /**
   * Keeps a zygote of {@code key} ready from now on, made by {@code recipe} (asked for by its first
   * refill, in the background); a key already kept only counts as used. {@code label} says what it
   * holds, for people.
   */
  public void offer(String key, String label, Callable<SandboxPool.Recipe> recipe) {
    List<SandboxPool> dropped = new ArrayList<>();
    synchronized (this) {
      if (closed || pools.get(key) != null) {
        return;
      }
      SandboxPool pool = new SandboxPool(places, recipe, warmer, 1, "kiln-zygote");
      pool.yieldTo(() -> busy.getAsBoolean());
      pool.deferWhile(() -> serving.getAsBoolean(), maxDefer);
      pools.put(key, new Kept(pool, label));
      pool.start();
      for (var it = pools.entrySet().iterator(); pools.size() > keys; ) {
        var eldest = it.next();
        dropped.add(eldest.getValue().pool());
        it.remove();
      }
    }
    if (!dropped.isEmpty()) {
      log.info("dropped {} zygote(s) of the least recently used package sets", dropped.size());
      dropped.forEach(p -> CompletableFuture.runAsync(p::close));
    }
  }

  /**
   * The ready zygote of {@code key}, when it has one of {@code limits}: the caller's from now on.
   * Empty on a miss.
   */
  public Optional<SandboxPool.Warm> take(String key, Limits limits) {
    SandboxPool pool;
    synchronized (this) {
      Kept kept = pools.get(key);
      pool = kept == null ? null : kept.pool();
    }
    Optional<SandboxPool.Warm> w = pool == null ? Optional.empty() : pool.take(limits);
    synchronized (this) {
      if (w.isPresent()) {
        hits++;
      } else {
        misses++;
      }
    }
    return w;
  }

  /** Stops one ready zygote to give its room to a start that needs it; the oldest key's first. */
  public Optional<CompletableFuture<Void>> discardOne() {
    List<SandboxPool> all;
    synchronized (this) {
      all = pools.values().stream().map(Kept::pool).toList();
    }
    for (SandboxPool p : all) {
      Optional<CompletableFuture<Void>> d = p.discardOne();
      if (d.isPresent()) {
        return d;
      }
    }
    return Optional.empty();
  }

  /** The zygotes ready now, least recently used first. */
  public synchronized List<Ready> ready() {
    List<Ready> all = new ArrayList<>();
    for (Kept k : pools.values()) {
      k.pool().readySandboxes().forEach(s -> all.add(new Ready(k.label(), s)));
    }
    return all;
  }

  public synchronized Stats stats() {
    int ready = 0;
    for (Kept k : pools.values()) {
      ready += k.pool().stats().ready();
    }
    return new Stats(pools.size(), ready, hits, misses);
  }

  /** Stops every zygote (a sandbox being started is finished, then stopped). */
  @Override
  public void close() {
    List<SandboxPool> all;
    synchronized (this) {
      closed = true;
      all = pools.values().stream().map(Kept::pool).toList();
      pools.clear();
    }
    all.forEach(SandboxPool::close);
  }
}
