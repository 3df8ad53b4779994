package dev.kiln.base;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
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

  /** An executor that only queues its tasks; the test runs them (or never does). */
  private static final class Queued implements Executor {
    final List<Runnable> tasks = new ArrayList<>();

    @Override
    public void execute(Runnable task) {
      tasks.add(task);
    }
  }

  /** Waits (polling, with a deadline) until {@code t} is parked, e.g. waiting for a flight. */
  private static void awaitParked(Thread t) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (t.getState() != Thread.State.WAITING && t.getState() != Thread.State.TIMED_WAITING) {
      assertThat(System.nanoTime()).as("%s parks within 10 s", t).isLessThan(deadline);
      LockSupport.parkNanos(1_000_000);
    }
  }

  @Test
  void aRunCallBeforeTheExecutorBeganDoesTheStartedWorkItself() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    AtomicInteger runs = new AtomicInteger();
    Queued executor = new Queued();
    CompletableFuture<Integer> started =
        flights.start("k", () -> runs.incrementAndGet() * 100, executor);
    assertThat(flights.contains("k")).as("registered at once").isTrue();
    assertThat(executor.tasks).hasSize(1);
    // A second start while it is pending starts nothing more.
    CompletableFuture<Integer> again =
        flights.start("k", () -> runs.incrementAndGet() * 1000, executor);
    assertThat(executor.tasks).hasSize(1);

    assertThat(flights.run("k", runs::incrementAndGet)).isEqualTo(1);
    assertThat(started).isCompletedWithValue(1);
    assertThat(again).isCompletedWithValue(1);
    executor.tasks.get(0).run(); // the executor gets to it late: nothing left to do
    assertThat(runs).hasValue(1);
    assertThat(flights.size()).isZero();
  }

  @Test
  void runCallsWhileStartedWorkRunsWaitForIt() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    AtomicInteger runs = new AtomicInteger();
    CountDownLatch begun = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    try (ExecutorService pool = Executors.newFixedThreadPool(1)) {
      CompletableFuture<Integer> started =
          flights.start(
              "k",
              () -> {
                runs.incrementAndGet();
                begun.countDown();
                release.await();
                return 42;
              },
              pool);
      assertThat(begun.await(10, TimeUnit.SECONDS)).isTrue();
      CompletableFuture<Integer> joined = new CompletableFuture<>();
      Thread joiner =
          Thread.ofVirtual()
              .start(
                  () -> {
                    try {
                      joined.complete(flights.run("k", () -> runs.incrementAndGet() * 1000));
                    } catch (Exception e) {
                      joined.completeExceptionally(e);
                    }
                  });
      awaitParked(joiner);
      release.countDown();
      assertThat(joined.get(10, TimeUnit.SECONDS)).isEqualTo(42);
      assertThat(started.get(10, TimeUnit.SECONDS)).isEqualTo(42);
      assertThat(runs).hasValue(1);
    }
  }

  @Test
  void aRunCallThatWaitedForFailedStartedWorkComputesAfresh() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    CountDownLatch begun = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    try (ExecutorService pool = Executors.newFixedThreadPool(1)) {
      CompletableFuture<Integer> started =
          flights.start(
              "k",
              () -> {
                begun.countDown();
                release.await();
                throw new IOException("prefetch failed");
              },
              pool);
      assertThat(begun.await(10, TimeUnit.SECONDS)).isTrue();
      CompletableFuture<Integer> joined = new CompletableFuture<>();
      Thread joiner =
          Thread.ofVirtual()
              .start(
                  () -> {
                    try {
                      joined.complete(flights.<IOException>run("k", () -> 7));
                    } catch (Exception e) {
                      joined.completeExceptionally(e);
                    }
                  });
      awaitParked(joiner);
      release.countDown();
      assertThat(joined.get(10, TimeUnit.SECONDS))
          .as("its own value, not the failure")
          .isEqualTo(7);
      assertThatThrownBy(() -> started.get(10, TimeUnit.SECONDS))
          .hasCauseInstanceOf(IOException.class)
          .hasRootCauseMessage("prefetch failed");
    }
    assertThat(flights.size()).isZero();
  }

  @Test
  void startJoinsAComputationUnderWayAndARejectedStartLeavesNothing() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    CountDownLatch begun = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    Queued executor = new Queued();
    try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
      Future<Integer> leader =
          pool.submit(
              () ->
                  flights.run(
                      "k",
                      () -> {
                        begun.countDown();
                        release.await();
                        return 5;
                      }));
      assertThat(begun.await(10, TimeUnit.SECONDS)).isTrue();
      CompletableFuture<Integer> started = flights.start("k", () -> 6, executor);
      assertThat(executor.tasks).as("nothing new started").isEmpty();
      release.countDown();
      assertThat(leader.get(10, TimeUnit.SECONDS)).isEqualTo(5);
      assertThat(started.get(10, TimeUnit.SECONDS)).isEqualTo(5);
    }
    Executor closed =
        task -> {
          throw new RejectedExecutionException("shut down");
        };
    assertThatThrownBy(() -> flights.start("r", () -> 1, closed))
        .isInstanceOf(RejectedExecutionException.class);
    assertThat(flights.contains("r")).isFalse();
    assertThat(flights.run("r", () -> 2)).isEqualTo(2);
  }

  @Test
  void rememberingKeepsWhatStartedWorkComputed() throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.remembering();
    AtomicInteger runs = new AtomicInteger();
    Queued executor = new Queued();
    CompletableFuture<Integer> started =
        flights.start("k", () -> runs.incrementAndGet() * 10, executor);
    executor.tasks.get(0).run();
    assertThat(started).isCompletedWithValue(10);
    assertThat(flights.contains("k")).isTrue();
    assertThat(flights.run("k", runs::incrementAndGet)).isEqualTo(10);
    flights.start("k", runs::incrementAndGet, executor);
    assertThat(executor.tasks).as("a kept value starts nothing").hasSize(1);
    assertThat(runs).hasValue(1);
  }

  @Test
  void joinersOfAnInterruptedComputationComputeAfreshInsteadOfSeeingTheInterrupt()
      throws Exception {
    SingleFlight<String, Integer> flights = SingleFlight.forgetting();
    CountDownLatch started = new CountDownLatch(1);
    try (ExecutorService pool = Executors.newVirtualThreadPerTaskExecutor()) {
      Future<Integer> leader =
          pool.submit(
              () ->
                  flights.run(
                      "k",
                      () -> {
                        started.countDown();
                        new CountDownLatch(1).await(); // until interrupted
                        return 1;
                      }));
      assertThat(started.await(10, TimeUnit.SECONDS)).isTrue();
      CompletableFuture<Integer> joined = new CompletableFuture<>();
      Thread joiner =
          Thread.ofPlatform()
              .start(
                  () -> {
                    try {
                      joined.complete(flights.run("k", () -> 2));
                    } catch (Throwable t) {
                      joined.completeExceptionally(t);
                    }
                  });
      // Wait (with a deadline) until the joiner waits on the leader's computation.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (joiner.getState() != Thread.State.WAITING && System.nanoTime() < deadline) {
        Thread.onSpinWait();
      }
      assertThat(joiner.getState()).isEqualTo(Thread.State.WAITING);
      leader.cancel(true); // interrupts the leader's thread
      assertThat(joined.get(10, TimeUnit.SECONDS)).isEqualTo(2);
    }
  }
}
