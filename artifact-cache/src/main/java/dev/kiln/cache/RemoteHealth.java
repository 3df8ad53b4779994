package dev.kiln.cache;

import com.github.benmanes.caffeine.cache.Ticker;
import java.time.Duration;

/**
 * Whether the remote tier is up. After a failure, reads on the request path skip it until it is
 * known to be back, so an S3 outage (even one where connections hang until they time out) costs the
 * request path one failed call, not one per request. Only the background writer probes it, after a
 * backoff that doubles with each failure up to a bound; the first success marks it up and wakes the
 * writer.
 */
final class RemoteHealth {
  private final Duration min;
  private final Duration max;
  private final Ticker ticker;
  private long failures;
  private long retryAt;
  private Runnable onChange = () -> {};

  RemoteHealth(Duration min, Duration max) {
    this(min, max, Ticker.systemTicker());
  }

  /** With the time source backoffs are measured on. */
  RemoteHealth(Duration min, Duration max, Ticker ticker) {
    this.min = min;
    this.max = max;
    this.ticker = ticker;
  }

  /** Called (outside this object's lock) whenever the tier goes down or comes back. */
  synchronized void onChange(Runnable r) {
    onChange = r;
  }

  /** True unless the last call to the remote tier failed. */
  synchronized boolean up() {
    return failures == 0;
  }

  /** Nanoseconds until the next try is due (0 when it is). */
  synchronized long nanosUntilRetry() {
    return failures == 0 ? 0 : Math.max(0, retryAt - ticker.read());
  }

  synchronized boolean down() {
    return failures > 0;
  }

  /** Records a failure; returns how many failures in a row this makes. */
  long failed() {
    long n;
    Runnable r;
    synchronized (this) {
      n = ++failures;
      retryAt = ticker.read() + Tuning.backoffNanos(min, max, failures);
      r = onChange;
    }
    if (n == 1) {
      r.run(); // the writer starts probing
    }
    return n;
  }

  void succeeded() {
    Runnable r;
    synchronized (this) {
      if (failures == 0) {
        return;
      }
      failures = 0;
      r = onChange;
    }
    r.run();
  }
}
