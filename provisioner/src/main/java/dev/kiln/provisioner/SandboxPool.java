package dev.kiln.provisioner;

import dev.kiln.base.KilnException;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sandboxes started ahead of need (the warm pool): each from one recipe's image, with its processes
 * already started and warm, waiting to be handed to one UDF. A sandbox taken from the pool is never
 * given back; the pool starts another in the background. Refills take room in the node budget only
 * when there is some (they never stop a sandbox in use), and {@link #discardOne} gives a pooled
 * sandbox's room back first when a start needs it.
 */
public final class SandboxPool implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(SandboxPool.class);

  /** How long a refill waits after a failure or a full budget before it tries again. */
  static final Duration RETRY = Duration.ofSeconds(5);

  /** The longest wait after failures in a row. */
  static final Duration MAX_RETRY = Duration.ofMinutes(5);

  /** How often a refill that yields looks again. */
  static final Duration YIELD = Duration.ofMillis(50);

  /** How often a refill that waits for calls to pause looks again. */
  static final Duration DEFER_POLL = Duration.ofMillis(10);

  /** A sandbox started ahead of need, and the processes started in it. */
  public record Warm(Sandbox sandbox, List<SandboxProcess> processes) {
    public Warm {
      processes = List.copyOf(processes);
    }
  }

  /**
   * How every pooled sandbox is made: started from {@code spec}, then {@code processes} processes
   * of {@code argv} with {@code env} started in it.
   */
  public record Recipe(SandboxSpec spec, List<String> argv, List<String> env, int processes) {
    public Recipe {
      Objects.requireNonNull(spec, "spec");
      argv = List.copyOf(argv);
      env = List.copyOf(env);
    }
  }

  /** Tells when a process started in a pooled sandbox is warm (waits for it). */
  @FunctionalInterface
  public interface Warmer {
    void warm(SandboxProcess process) throws IOException, InterruptedException;
  }

  /** What the pool holds and did: for metrics and {@code kiln ps}. */
  public record Stats(
      int size,
      int ready,
      long hits,
      long misses,
      long refills,
      long failures,
      double lastMillis,
      long deferred,
      boolean deferring) {}

  private final PlaceSandbox places;
  private final Callable<Recipe> recipeSource;
  private final Warmer warmer;
  private final int size;
  private final Deque<Warm> ready = new ArrayDeque<>();
  // Recycled: out of the ready ones, stopped by the refill thread before its next refill.
  private final List<Warm> retiring = new ArrayList<>();
  private final Thread refiller;
  private volatile BooleanSupplier busy = () -> false;
  private volatile BooleanSupplier serving = () -> false;
  private volatile Duration maxDefer = Duration.ZERO;
  private long deferred;
  private boolean deferring;
  private int failedInARow;
  private boolean closed;
  private long hits;
  private long misses;
  private long refills;
  private long failures;
  private double lastMillis;

  /**
   * @param places starts the sandboxes (inside the node budget)
   * @param recipe how a pooled sandbox is made; asked for by every refill
   * @param warmer waits until each started process is warm
   * @param size sandboxes kept ready
   */
  public SandboxPool(PlaceSandbox places, Callable<Recipe> recipe, Warmer warmer, int size) {
    this(places, recipe, warmer, size, "kiln-warm-pool");
  }

  /** A pool whose refill thread is called {@code threadName}. */
  SandboxPool(
      PlaceSandbox places, Callable<Recipe> recipe, Warmer warmer, int size, String threadName) {
    if (size < 1) {
      throw new IllegalArgumentException("a warm pool holds at least one sandbox, got " + size);
    }
    this.places = Objects.requireNonNull(places, "places");
    this.recipeSource = Objects.requireNonNull(recipe, "recipe");
    this.warmer = Objects.requireNonNull(warmer, "warmer");
    this.size = size;
    this.refiller = Thread.ofPlatform().daemon().name(threadName).unstarted(this::refill);
  }

  /**
   * Refills wait while {@code busy} holds (e.g. a UDF's own sandbox is being started): on a small
   * machine, starting a warm sandbox at the same time would slow down the start it is meant to
   * spare.
   */
  public void yieldTo(BooleanSupplier busy) {
    this.busy = Objects.requireNonNull(busy, "busy");
  }

  /**
   * Refills also wait while {@code serving} holds (calls are being served), but at most {@code
   * maxDefer} each: a refill takes CPU time and caches from the calls of UDFs at work, even at the
   * least priority, and those calls count for more than the next new UDF's pool hit. One that has
   * waited that long goes ahead anyway, in the background, so a server that never pauses still
   * refills.
   */
  public void deferWhile(BooleanSupplier serving, Duration maxDefer) {
    this.serving = Objects.requireNonNull(serving, "serving");
    this.maxDefer = Objects.requireNonNull(maxDefer, "maxDefer");
  }

  /** Starts filling the pool in the background. */
  public void start() {
    refiller.start();
  }

  /**
   * A warm sandbox for a sandbox of {@code limits}, when one is ready: it is the caller's from now
   * on (closing it is the caller's). Empty on a miss; either way the pool refills.
   */
  public synchronized Optional<Warm> take(Limits limits) {
    for (var it = ready.iterator(); it.hasNext(); ) {
      Warm w = it.next();
      if (!w.sandbox().isRunning() || w.processes().stream().anyMatch(p -> !p.isAlive())) {
        it.remove();
        w.sandbox().close();
        continue;
      }
      if (w.sandbox().spec().limits().equals(limits)) {
        it.remove();
        hits++;
        notifyAll();
        w.sandbox().toForeground();
        return Optional.of(w);
      }
    }
    misses++;
    return Optional.empty();
  }

  /**
   * Stops one ready sandbox to give its room in the budget to a start that needs it; empty when
   * none is ready. The pool does not refill until there is room again.
   */
  public Optional<CompletableFuture<Void>> discardOne() {
    Warm w;
    synchronized (this) {
      // A recycled one first: it was going anyway.
      w = retiring.isEmpty() ? ready.pollLast() : retiring.removeLast();
      notifyAll(); // a full pool's refill waits for a place to become free
    }
    if (w == null) {
      return Optional.empty();
    }
    log.info("stopped a warm sandbox to make room for a UDF's");
    return Optional.of(CompletableFuture.runAsync(w.sandbox()::close));
  }

  /**
   * Replaces the oldest ready sandbox with a fresh one: it leaves the ready ones now, and the
   * refill thread stops it and starts another, both background work that waits like any refill (see
   * {@link #yieldTo}, {@link #deferWhile}). False when none is ready.
   */
  public synchronized boolean recycleOne() {
    Warm w = ready.pollFirst();
    if (w == null) {
      return false;
    }
    retiring.add(w);
    notifyAll();
    return true;
  }

  /** The sandboxes ready now, for {@code kiln ps}. */
  public synchronized List<Sandbox> readySandboxes() {
    return ready.stream().map(Warm::sandbox).toList();
  }

  public synchronized Stats stats() {
    return new Stats(
        size, ready.size(), hits, misses, refills, failures, lastMillis, deferred, deferring);
  }

  private void refill() {
    while (true) {
      List<Warm> toStop;
      synchronized (this) {
        while (!closed && ready.size() >= size) {
          waitQuietly(0);
        }
        while (!closed && busy.getAsBoolean()) {
          waitQuietly(YIELD.toMillis());
        }
        awaitPause();
        if (closed) {
          return;
        }
        toStop = List.copyOf(retiring);
        retiring.clear();
      }
      for (Warm w : toStop) {
        w.sandbox().close();
        log.info("stopped a recycled warm sandbox; starting a fresh one in its place");
      }
      try {
        if (refillOne()) {
          failedInARow = 0;
        } else {
          pause(RETRY); // no room in the budget: try again later
        }
      } catch (InterruptedException e) {
        return;
      } catch (KilnException | IOException | RuntimeException e) {
        synchronized (this) {
          failures++;
        }
        // 5 s, doubling up to 5 min while it keeps failing (a base image that cannot be had).
        Duration wait = RETRY.multipliedBy(1L << Math.min(failedInARow++, 6));
        wait = wait.compareTo(MAX_RETRY) > 0 ? MAX_RETRY : wait;
        log.warn("starting a warm sandbox failed (retrying in {} s): {}", wait.toSeconds(), e);
        pause(wait);
      }
    }
  }

  /** Waits, at most {@link #maxDefer}, while calls are being served (see {@link #deferWhile}). */
  private synchronized void awaitPause() {
    long until = System.nanoTime() + maxDefer.toNanos();
    if (closed || !serving.getAsBoolean() || maxDefer.isZero()) {
      return;
    }
    deferred++;
    deferring = true;
    try {
      while (!closed && serving.getAsBoolean() && System.nanoTime() - until < 0) {
        waitQuietly(DEFER_POLL.toMillis());
      }
    } finally {
      deferring = false;
    }
  }

  /** Starts one pooled sandbox and its processes; false when the budget has no room now. */
  private boolean refillOne() throws KilnException, IOException, InterruptedException {
    long t0 = System.nanoTime();
    Recipe r = recipe();
    // In the background until taken: starting and warming it must not slow down UDFs at work.
    Optional<Sandbox> placed = places.placeIfRoom(r.spec().inBackground());
    if (placed.isEmpty()) {
      return false;
    }
    Sandbox sandbox = placed.get();
    try {
      List<SandboxProcess> processes = new ArrayList<>();
      for (int i = 0; i < r.processes(); i++) {
        processes.add(sandbox.exec(r.argv(), r.env()));
      }
      for (SandboxProcess p : processes) {
        warmer.warm(p);
      }
      Warm w = new Warm(sandbox, processes);
      synchronized (this) {
        if (closed) {
          sandbox.close();
          return true;
        }
        ready.addLast(w);
        refills++;
        lastMillis = (System.nanoTime() - t0) / 1e6;
      }
      // One that stops on its own (or is closed by its new owner) leaves the ready list.
      sandbox
          .stopped()
          .thenRun(
              () -> {
                synchronized (this) {
                  if (ready.remove(w)) {
                    notifyAll();
                  }
                }
              });
      return true;
    } catch (IOException | InterruptedException | RuntimeException e) {
      sandbox.close();
      throw e;
    }
  }

  /**
   * Asked for at every refill: a recipe may get better (an image with byte code, once compiled), so
   * it must be cheap when nothing changed.
   */
  private Recipe recipe() throws KilnException, IOException {
    try {
      return recipeSource.call();
    } catch (KilnException | IOException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new IOException("the warm pool's recipe failed: " + e, e);
    }
  }

  private synchronized void pause(Duration wait) {
    if (!closed) {
      waitQuietly(wait.toMillis());
    }
  }

  private void waitQuietly(long millis) {
    try {
      wait(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      closed = true;
    }
  }

  /**
   * Stops refilling (a sandbox being started is finished, then stopped) and every ready sandbox;
   * taken ones are their owners'.
   */
  @Override
  public void close() {
    List<Warm> left;
    synchronized (this) {
      closed = true;
      notifyAll();
      left = new ArrayList<>(ready);
      left.addAll(retiring);
      ready.clear();
      retiring.clear();
    }
    try {
      refiller.join(TimeUnit.SECONDS.toMillis(30));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    synchronized (this) {
      left.addAll(ready);
      left.addAll(retiring);
      ready.clear();
      retiring.clear();
    }
    left.forEach(w -> w.sandbox().close());
  }
}
