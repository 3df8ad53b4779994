package dev.kiln.worker;

import java.time.Instant;
import java.time.InstantSource;
import java.util.Objects;
import java.util.function.LongSupplier;

/**
 * The worker's time, injected in one piece: the wall clock for what it reports (when a UDF's first
 * and latest requests arrived) and a monotonic ticker for what it waits out (the runner restart
 * backoff, log intervals). Tests pass fakes to check timing without sleeping.
 *
 * @param wall wall-clock instants
 * @param ticker nanoseconds from an arbitrary origin, never going back, as {@link System#nanoTime}
 */
record TimeSource(InstantSource wall, LongSupplier ticker) {

  /** The system clock and {@link System#nanoTime()}. */
  static final TimeSource SYSTEM = new TimeSource(InstantSource.system(), System::nanoTime);

  TimeSource {
    Objects.requireNonNull(wall, "wall");
    Objects.requireNonNull(ticker, "ticker");
  }

  Instant instant() {
    return wall.instant();
  }

  long nanoTime() {
    return ticker.getAsLong();
  }
}
