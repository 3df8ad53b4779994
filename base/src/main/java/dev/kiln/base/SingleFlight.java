package dev.kiln.base;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;

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
 * @param <K> the key
 * @param <V> the value
 */
public final class SingleFlight<K, V> {

  /** The computation for one key; it may fail with {@code E}, or be interrupted. */
  @FunctionalInterface
  public interface Work<V, E extends Exception> {
    V run() throws E, InterruptedException;
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
   * failure of the computation this call joined is rethrown as it was thrown.
   */
  public <E extends Exception> V run(K key, Work<V, E> work) throws E, InterruptedException {
    CompletableFuture<V> mine = new CompletableFuture<>();
    CompletableFuture<V> theirs = flights.putIfAbsent(key, mine);
    if (theirs != null) {
      return join(theirs);
    }
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

  /** Computations running now (remembering: and values kept). */
  public int size() {
    return flights.size();
  }

  /** True when a computation for the key runs now (or, remembering, has succeeded). */
  public boolean contains(K key) {
    return flights.containsKey(key);
  }

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
      if (cause instanceof InterruptedException i) {
        throw i;
      }
      // The computation throws only E (or unchecked exceptions, handled above).
      throw (E) cause;
    }
  }
}
