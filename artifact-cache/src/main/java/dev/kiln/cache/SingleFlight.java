package dev.kiln.cache;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;

/**
 * Runs one computation per key at a time: the first caller computes, callers that arrive while it
 * runs wait for its result instead of starting their own (one fetch of a blob, one download of an
 * import). The key is forgotten when the computation ends, so a later call computes again.
 */
final class SingleFlight<K, V> {
  /** A computation that may fail the way fetches fail. */
  interface Work<V> {
    V run() throws Exception;
  }

  private final ConcurrentHashMap<K, CompletableFuture<V>> running = new ConcurrentHashMap<>();

  /** Number of computations running now. */
  int running() {
    return running.size();
  }

  V run(K key, Work<V> work) throws Exception {
    CompletableFuture<V> mine = new CompletableFuture<>();
    CompletableFuture<V> theirs = running.putIfAbsent(key, mine);
    if (theirs != null) {
      try {
        return theirs.get();
      } catch (ExecutionException e) {
        throw unwrap(e.getCause());
      }
    }
    try {
      V v = work.run();
      mine.complete(v);
      return v;
    } catch (Throwable t) {
      mine.completeExceptionally(t);
      throw t;
    } finally {
      running.remove(key, mine);
    }
  }

  private static Exception unwrap(Throwable t) {
    if (t instanceof Exception e) {
      return e;
    }
    if (t instanceof Error err) {
      throw err;
    }
    return new UncheckedIOException(new IOException(t));
  }
}
