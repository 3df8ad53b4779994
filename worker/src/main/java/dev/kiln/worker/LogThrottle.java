package dev.kiln.worker;

import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * At most one log line per key every interval, timed on the injected ticker: a UDF whose rows keep
 * failing would otherwise log on every batch.
 */
final class LogThrottle {

  private final long intervalNanos;
  private final TimeSource time;
  private final Map<String, Long> logged = new ConcurrentHashMap<>();

  LogThrottle(Duration interval, TimeSource time) {
    this.intervalNanos = interval.toNanos();
    this.time = time;
  }

  /** True when a line for {@code key} may be logged now; it then counts as logged. */
  boolean allow(String key) {
    long now = time.nanoTime();
    Long last = logged.get(key);
    if (last != null && now - last < intervalNanos) {
      return false;
    }
    logged.put(key, now);
    return true;
  }
}
