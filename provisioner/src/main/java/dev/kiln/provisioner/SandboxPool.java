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
      double lastMillis) {}

  private final PlaceSandbox places;
  private final Callable<Recipe> recipeSource;
  private final Warmer warmer;
  private final int size;
  private final Deque<Warm> ready = new ArrayDeque<>();
  private final Thread refiller;
  private volatile BooleanSupplier busy = () -> false;
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
      w = ready.pollLast();
      notifyAll(); // a full pool's refill waits for a place to become free
    }
    if (w == null) {
      return Optional.empty();
    }
    log.info("stopped a warm sandbox to make room for a UDF's");
    return Optional.of(CompletableFuture.runAsync(w.sandbox()::close));
  }

  /** The sandboxes ready now, for {@code kiln ps}. */
  public synchronized List<Sandbox> readySandboxes() {
    return ready.stream().map(Warm::sandbox).toList();
  }

  public synchronized Stats stats() {
    return new Stats(size, ready.size(), hits, misses, refills, failures, lastMillis);
  }

  private void refill() {
    while (true) {
      synchronized (this) {
        while (!closed && ready.size() >= size) {
          waitQuietly(0);
        }
        while (!closed && busy.getAsBoolean()) {
          waitQuietly(YIELD.toMillis());
        }
        if (closed) {
          return;
        }
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
      ready.clear();
    }
    try {
      refiller.join(TimeUnit.SECONDS.toMillis(30));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    synchronized (this) {
      left.addAll(ready);
      ready.clear();
    }
    left.forEach(w -> w.sandbox().close());
  }
}
