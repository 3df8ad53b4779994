package dev.kiln.base;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

class SingleFlightTest {

  @Test
  void callersThatArriveWhileItRunsShareOneComputation() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    AtomicInteger runs = new AtomicInteger();
    CountDownLatch started = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
      Future<Integer> leader =
          pool.submit(
              () ->
                  flights.run(
                      "k",
                      () -> {
                        runs.incrementAndGet();
                        started.countDown();
                        release.await();
                        return 42;
                      }));
      assertThat(started.await(10, TimeUnit.SECONDS)).isTrue();
      List<Future<Integer>> joiners = new ArrayList<>();
      for (int i = 0; i < 8; i++) {
        joiners.add(pool.submit(() -> flights.run("k", () -> runs.incrementAndGet() * 1000)));
      }
      // Every joiner is waiting on the leader's computation, which is still running.
      assertThat(flights.contains("k")).isTrue();
      release.countDown();
      assertThat(leader.get(10, TimeUnit.SECONDS)).isEqualTo(42);
      for (Future<Integer> j : joiners) {
        int v = j.get(10, TimeUnit.SECONDS);
        // A joiner that arrived after the leader finished computes afresh (forgetting).
        assertThat(v == 42 || v % 1000 == 0).isTrue();
      }
    }
    assertThat(flights.size()).isZero();
  }

  @Test
  void forgettingComputesAgainAfterTheComputationEnded() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    AtomicInteger runs = new AtomicInteger();
    assertThat(flights.run("k", runs::incrementAndGet)).isEqualTo(1);
    assertThat(flights.run("k", runs::incrementAndGet)).isEqualTo(2);
    assertThat(flights.size()).isZero();
  }

  @Test
  void rememberingKeepsSuccessesButNotFailures() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.remembering();
    AtomicInteger runs = new AtomicInteger();
    assertThatThrownBy(
            () ->
                flights.run(
                    "k",
                    () -> {
                      runs.incrementAndGet();
                      throw new IOException("index down");
                    }))
        .isInstanceOf(IOException.class)
        .hasMessage("index down");
    assertThat(flights.contains("k")).as("a failure is not kept").isFalse();
    assertThat(flights.run("k", () -> runs.incrementAndGet() * 10)).isEqualTo(20);
    assertThat(flights.run("k", () -> runs.incrementAndGet() * 100))
        .as("the success is kept")
        .isEqualTo(20);
    assertThat(runs).hasValue(2);
  }

  @Test
  void joinersSeeTheLeadersFailureAsItWasThrown() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    CountDownLatch started = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    KilnException failure = new KilnException(ErrorCode.PACKAGE_NOT_FOUND, "no package named 'x'");
    try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
      Future<Integer> leader =
          pool.submit(
              () ->
                  flights.run(
                      "k",
                      () -> {
                        started.countDown();
                        release.await();
                        throw failure;
                      }));
      assertThat(started.await(10, TimeUnit.SECONDS)).isTrue();
      CountDownLatch joined = new CountDownLatch(1);
      Future<Integer> joiner =
          pool.submit(
              () -> {
                joined.countDown();
                return flights.<KilnException>run("k", () -> 0);
              });
      assertThat(joined.await(10, TimeUnit.SECONDS)).isTrue();
      release.countDown();
      assertThatThrownBy(() -> leader.get(10, TimeUnit.SECONDS)).hasCause(failure);
      // The joiner either joined the failing flight (same exception) or came after it and
      // computed its own value.
      try {
        assertThat(joiner.get(10, TimeUnit.SECONDS)).isZero();
      } catch (java.util.concurrent.ExecutionException e) {
        assertThat(e.getCause()).isSameAs(failure);
      }
    }
  }
}
