package dev.kiln.worker;

import java.time.Duration;
import java.util.function.BooleanSupplier;

/**
 * A call's cancellation that also unparks the thread waiting for the call's slices when the call is
 * cancelled (a gRPC cancel handler does), so the wait looks at it only every {@code poll}. A plain
 * {@link BooleanSupplier} is looked at every 100 ms: with 256 calls queued for two runners, that
 * was thousands of wake-ups a second, each a virtual thread unparked, scheduled and parked again.
 */
record WakingCancellation(BooleanSupplier cancelled, Duration poll) implements BooleanSupplier {

  /** How often a call of the Flight endpoint looks at its cancellation while it waits. */
  static final Duration FLIGHT_POLL = Duration.ofSeconds(1);

  @Override
  public boolean getAsBoolean() {
    return cancelled.getAsBoolean();
  }
}
