package dev.kiln.worker;

import java.time.Duration;
import java.util.function.BooleanSupplier;

/**
 * A call's cancellation as the pool looks at it while the call waits for its slices: whether the
 * caller has gone, and how long the wait may stay parked between two looks.
 */
@FunctionalInterface
interface Cancellation {

  /** How often a wait looks when nothing wakes it on cancellation. */
  Duration POLL = Duration.ofMillis(100);

  /**
   * How often a call of the Flight endpoint looks: its cancel handler wakes it, so the look is only
   * a fallback. Every 100 ms, 256 calls queued for two runners made thousands of wake-ups a second,
   * each a virtual thread unparked, scheduled and parked again.
   */
  Duration FLIGHT_POLL = Duration.ofSeconds(1);

  boolean isCancelled();

  /** The longest a wait stays parked between looks at {@link #isCancelled}. */
  default Duration poll() {
    return POLL;
  }

  /**
   * A cancellation whose waiter is unparked when it is cancelled (as a gRPC cancel handler does),
   * so the wait need look only every {@code poll}.
   */
  static Cancellation waking(BooleanSupplier cancelled, Duration poll) {
    return new Waking(cancelled, poll);
  }

  /** See {@link #waking}. */
  record Waking(BooleanSupplier cancelled, Duration poll) implements Cancellation {
    @Override
    public boolean isCancelled() {
      return cancelled.getAsBoolean();
    }
  }
}
