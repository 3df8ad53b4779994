package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;

import com.github.benmanes.caffeine.cache.Ticker;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;

/** The remote tier's backoff, on a ticker the test moves: no waiting. */
class RemoteHealthTest {
  private final AtomicLong now = new AtomicLong(1_000_000_000L);
  private final Ticker ticker = now::get;
  private final RemoteHealth health =
      new RemoteHealth(Duration.ofSeconds(1), Duration.ofSeconds(8), ticker);

  @Test
  void backoffDoublesWithEachFailureUpToItsBound() {
    assertThat(health.up()).isTrue();
    assertThat(health.nanosUntilRetry()).isZero();
    long[] expectedSeconds = {1, 2, 4, 8, 8, 8};
    for (long seconds : expectedSeconds) {
      health.failed();
      assertThat(health.down()).isTrue();
      assertThat(health.nanosUntilRetry()).isEqualTo(Duration.ofSeconds(seconds).toNanos());
    }
  }

  @Test
  void theRetryComesDueAsTimePassesAndASuccessMarksItUp() {
    AtomicInteger changes = new AtomicInteger();
    health.onChange(changes::incrementAndGet);
    assertThat(health.failed()).isEqualTo(1);
    assertThat(health.failed()).isEqualTo(2);
    assertThat(changes).as("only going down is a change").hasValue(1);
    now.addAndGet(Duration.ofMillis(1500).toNanos());
    assertThat(health.nanosUntilRetry()).isEqualTo(Duration.ofMillis(500).toNanos());
    now.addAndGet(Duration.ofSeconds(1).toNanos());
    assertThat(health.nanosUntilRetry()).as("due").isZero();
    health.succeeded();
    assertThat(health.up()).isTrue();
    assertThat(changes).hasValue(2);
    health.succeeded();
    assertThat(changes).as("already up: no change").hasValue(2);
  }
}
