package dev.kiln.base;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One computation per key: the first caller computes (on its own thread), callers that arrive while
 * it runs wait for its result instead of starting their own, and all of them see the same value or
 * the same failure. A failure is never kept: the next call computes again.
 *
 * <p>Two flavours: {@link #forgetting()} forgets a key as soon as its computation ends (one
 * download of a blob at a time; a later call downloads again if it must), {@link #remembering()}
 * keeps each successful value for good (facts that cannot change, such as what an image digest
 * holds).
 *
 * <p>Work can also be {@linkplain #start started ahead of need} on an executor (prefetching), so
 * that the caller who needs it later finds it done or on its way.
 *
 * @param <K> the key
 * @param <V> the value
 */
public final class SingleFlight<K, V> {

  /** The computation for one key; it may fail with {@code E}, or be interrupted. */
  @FunctionalInterface
  public interface Work<V, E extends Exception> {
    V run() throws E, InterruptedException;
  }

  /**
   * A computation {@linkplain #start started ahead of need}: done by the executor, or by the first
   * {@link #run} call that finds it not begun yet, whichever claims it first.
   */
  private static final class Ahead<V> extends CompletableFuture<V> {
    private final AtomicBoolean claimed = new AtomicBoolean();

    boolean claim() {
      return claimed.compareAndSet(false, true);
    }
  }

  private final ConcurrentHashMap<K, CompletableFuture<V>> flights = new ConcurrentHashMap<>();
  private final boolean remember;

  private SingleFlight(boolean remember) {
    this.remember = remember;
  }

  /** Joins only computations that are running; a key is forgotten when its computation ends. */
  public static <K, V> SingleFlight<K, V> forgetting() {
    return new SingleFlight<>(false);
  }

  /** Keeps every successful value; failures are forgotten so that the next call tries again. */
  public static <K, V> SingleFlight<K, V> remembering() {
    return new SingleFlight<>(true);
  }

  /**
   * The value for {@code key}: computed by {@code work} on this thread when no computation for the
   * key runs (or, remembering, has succeeded), else the running one's (or the remembered) value. A
   * failure of the computation this call joined is rethrown as it was thrown, except for one
   * {@linkplain #start started ahead of need}: see there.
   */
  public <E extends Exception> V run(K key, Work<V, E> work) throws E, InterruptedException {
    while (true) {
      CompletableFuture<V> mine = new CompletableFuture<>();
      CompletableFuture<V> theirs = flights.putIfAbsent(key, mine);
      if (theirs == null) {
        return compute(key, mine, work);
      }
      if (!(theirs instanceof Ahead<V> ahead)) {
        V value = join(theirs);
        if (value != null || !isInterrupted(theirs)) {
          return value;
        }
        // Its computing thread was interrupted (stopped, not failed): this call computes afresh.
        flights.remove(key, theirs);
        continue;
      }
      if (ahead.claim()) {
        return compute(key, ahead, work); // not begun yet: done here, now
      }
      try {
        return ahead.get();
      } catch (ExecutionException failed) {
        // Work done ahead of need that failed is nobody's answer: compute (or join) afresh.
        flights.remove(key, ahead);
      }
    }
  }

  /**
   * Starts the computation for {@code key} on {@code executor}, ahead of need (prefetching), unless
   * one for the key runs (or, remembering, has succeeded). The key is registered at once: a {@link
   * #run} call that comes before the executor has begun the work does it itself, on its own thread
   * (the executor's task then does nothing), and one that comes while the work runs waits for it. A
   * failure of this work is not rethrown by {@link #run} calls that waited for it: they compute
   * afresh, as if it had not been started. Nor does a task the executor drops unrun leave anyone
   * waiting: the next {@link #run} call does the work.
   *
   * @return the value's future (of the computation already under way, if any), for chaining work
   *     that needs it; cancelling or completing it does not affect the computation
   * @throws RejectedExecutionException when the executor takes no more tasks; the key is then left
   *     as it was
   */
  public CompletableFuture<V> start(K key, Work<V, ?> work, Executor executor) {
    Ahead<V> ahead = new Ahead<>();
    CompletableFuture<V> theirs = flights.putIfAbsent(key, ahead);
    if (theirs != null) {
      return theirs.copy();
    }
    try {
      executor.execute(
          () -> {
            if (!ahead.claim()) {
              return; // a run call got to it first
            }
            try {
              compute(key, ahead, work);
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            } catch (Exception e) {
              // Kept in the future: callers who chained on it see it, run calls compute afresh.
            }
          });
    } catch (RejectedExecutionException e) {
      if (ahead.claim()) {
        flights.remove(key, ahead);
        ahead.completeExceptionally(e);
      }
      throw e;
    }
    return ahead.copy();
  }

  /** Computes the value on this thread as {@code mine}, the key's registered computation. */
  private <E extends Exception> V compute(K key, CompletableFuture<V> mine, Work<V, E> work)
      throws E, InterruptedException {
    boolean ok = false;
    try {
      V value = work.run();
      mine.complete(value);
      ok = true;
      return value;
    } catch (Throwable t) {
      mine.completeExceptionally(t);
      throw t;
    } finally {
      if (!ok || !remember) {
        flights.remove(key, mine);
      }
    }
  }

  /** Computations running or started now (remembering: and values kept). */
  public int size() {
    return flights.size();
  }

  /**
   * True when a computation for the key runs now or has been started (or, remembering, has
   * succeeded).
   */
  public boolean contains(K key) {
    return flights.containsKey(key);
  }

  /** The value, or null when the computation's own thread was interrupted; else its failure. */
  @SuppressWarnings("unchecked")
  private static <V, E extends Exception> V join(CompletableFuture<V> f)
      throws E, InterruptedException {
    try {
      return f.get();
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof RuntimeException r) {
        throw r;
      }
      if (cause instanceof Error err) {
        throw err;
      }
      if (cause instanceof InterruptedException) {
        return null; // see isInterrupted
      }
      // The computation throws only E (or unchecked exceptions, handled above).
      throw (E) cause;
    }
  }

  private static boolean isInterrupted(CompletableFuture<?> f) {
    return f.isCompletedExceptionally() && f.exceptionNow() instanceof InterruptedException;
  }
}
