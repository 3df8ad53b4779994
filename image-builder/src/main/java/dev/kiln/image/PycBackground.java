package dev.kiln.image;

import dev.kiln.base.KilnException;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Compiles byte code off the critical path. A build whose wheels have none cached builds its image
 * without at once and hands the wheels here: one compile at a time, started once no build is
 * running, in a single sandbox at the lowest CPU priority ({@link ImageHost#runInBackground}), so
 * that a UDF starting meanwhile keeps the other core. A later build of an image with those wheels
 * (another UDF, a code change, a restart) finds the byte code and ships it. A failed compile is
 * logged, never a UDF's error; the next build that misses the byte code asks again.
 */
final class PycBackground {
  private static final Logger log = LoggerFactory.getLogger(PycBackground.class);

  /** The wheel layers of a recipe, built (or found) when the compile starts. */
  interface WheelLayersOf {
    List<LayerSpec> get(BuildImage.Recipe recipe) throws KilnException, InterruptedException;
  }

  private final PycLayers pyc;
  private final WheelLayersOf wheelLayers;
  private final ThreadPoolExecutor thread;
  // The cache keys of the byte code being compiled or waiting for it: asked for once.
  private final Set<String> pending = ConcurrentHashMap.newKeySet();
  private final ReentrantLock lock = new ReentrantLock();
  private final Condition changed = lock.newCondition();
  private volatile BooleanSupplier busy = () -> false;
  private int builds; // builds under way
  private int compiles; // compiles asked for and not finished

  PycBackground(PycLayers pyc, WheelLayersOf wheelLayers) {
    this.pyc = pyc;
    this.wheelLayers = wheelLayers;
    // One thread, gone when idle: an idle builder keeps no thread.
    this.thread =
        new ThreadPoolExecutor(
            1,
            1,
            30,
            TimeUnit.SECONDS,
            new LinkedBlockingQueue<>(),
            r -> {
              Thread t = new Thread(r, "kiln-byte-code");
              t.setDaemon(true);
              t.setPriority(Thread.MIN_PRIORITY);
              return t;
            });
    this.thread.allowCoreThreadTimeOut(true);
  }

  /** Compiles also wait while {@code busy} holds (e.g. a UDF is being provisioned). */
  void yieldTo(BooleanSupplier busy) {
    this.busy = busy;
  }

  /** A build starts: compiles wait until none is under way. */
  void buildStarted() {
    lock.lock();
    try {
      builds++;
    } finally {
      lock.unlock();
    }
  }

  void buildEnded() {
    lock.lock();
    try {
      builds--;
      changed.signalAll();
    } finally {
      lock.unlock();
    }
  }

  /**
   * Compiles, in the background, the byte code that {@code cached} (the recipe's wheels, in order)
   * lacks; nothing when all of it is known or already asked for.
   */
  void submit(BuildImage.Recipe recipe, List<PycLayers.Cached> cached) {
    List<String> keys = cached.stream().filter(c -> !c.known()).map(c -> c.key()).toList();
    if (keys.isEmpty() || !pending.addAll(keys)) {
      return;
    }
    lock.lock();
    try {
      compiles++;
    } finally {
      lock.unlock();
    }
    thread.execute(() -> compile(recipe, keys));
  }

  private void compile(BuildImage.Recipe r, List<String> keys) {
    long t0 = System.nanoTime();
    try {
      awaitNoBuild();
      List<LayerSpec> layers = wheelLayers.get(r);
      // Collection waits while the compile reads the wheel layers and writes its own.
      DiskLock.LOCK.readLock().lockInterruptibly();
      try {
        pyc.compile(
            r.wheels(),
            layers,
            r.python(),
            (ls, argv) -> r.bases().compile(r.runtime(), ls, argv, true),
            1);
      } finally {
        DiskLock.LOCK.readLock().unlock();
      }
      log.debug(
          "byte code of {} packages ready for later builds in {} ms",
          r.wheels().size(),
          TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (KilnException | IOException | RuntimeException e) {
      log.warn(
          "compiling the byte code of {} packages failed; images go without it and a later build"
              + " tries again: {}",
          r.wheels().size(),
          e.toString());
    } finally {
      pending.removeAll(keys);
      lock.lock();
      try {
        compiles--;
        changed.signalAll();
      } finally {
        lock.unlock();
      }
    }
  }

  private void awaitNoBuild() throws InterruptedException {
    lock.lock();
    try {
      // Looked at again every 50 ms: nothing signals when busy stops holding.
      while (builds > 0 || busy.getAsBoolean()) {
        changed.await(50, TimeUnit.MILLISECONDS);
      }
    } finally {
      lock.unlock();
    }
  }

  /** Waits until every compile asked for has finished; false when {@code timeout} ran out. */
  boolean awaitIdle(Duration timeout) throws InterruptedException {
    long nanos = timeout.toNanos();
    lock.lock();
    try {
      while (compiles > 0) {
        if (nanos <= 0) {
          return false;
        }
        nanos = changed.awaitNanos(nanos);
      }
      return true;
    } finally {
      lock.unlock();
    }
  }
}
