package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.time.InstantSource;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class LogThrottleTest {

  @Test
  void oneLinePerKeyEveryInterval() {
    long[] now = {-5}; // any origin: only differences count
    LogThrottle throttle =
        new LogThrottle(
            Duration.ofSeconds(10), new TimeSource(InstantSource.system(), () -> now[0]));

    assertThat(throttle.allow("f")).isTrue();
    assertThat(throttle.allow("f")).isFalse();
    assertThat(throttle.allow("g")).as("another key").isTrue();

    now[0] += TimeUnit.SECONDS.toNanos(10) - 1;
    assertThat(throttle.allow("f")).isFalse();
    now[0] += 1;
    assertThat(throttle.allow("f")).isTrue();
    assertThat(throttle.allow("f")).isFalse();
    assertThat(throttle.allow("g")).as("10 s after its line").isTrue();
  }
}
