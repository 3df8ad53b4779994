package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.RuntimeSpec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Slices are encoded when a runner takes them, not when their call queues them: with one real
 * runner held on the first call, calls queued behind it hold no frame, and one whose caller leaves
 * before a runner takes it is never encoded (its columns may already be freed).
 */
class LazySliceEncodingIT {
  @TempDir Path dir;
  @RegisterExtension final HostRunnerPools runners = new HostRunnerPools();

  @Test
  void aQueuedSliceIsEncodedOnlyWhenARunnerTakesIt() throws Exception {
    Path release = dir.resolve("release");
    RuntimeSpec spec =
        Udfs.spec(
            "hold",
            List.of("BIGINT"),
            "BIGINT",
            "import os, time\n"
                + "def hold(x):\n"
                + "    deadline = time.time() + 60\n"
                + "    while not os.path.exists(%s) and time.time() < deadline:\n"
                    .formatted("'" + release + "'")
                + "        time.sleep(0.005)\n"
                + "    return x\n");
    RunnerSlots slots =
        new RunnerSlots(
            "hold",
            new HostRunnerLauncher(dir.resolve("udf"), spec),
            new RunnerPool.Options(1, Duration.ofSeconds(30), Duration.ofSeconds(60), 50),
            TimeSource.SYSTEM,
            ready -> {});
    slots.startSlot(slots.launch());
    AtomicInteger encoded = new AtomicInteger();
    try (FieldVector in =
        Vectors.of(runners.allocator(), "arg1", new ArrowType.Int(64, true), List.of(7L))) {
      RunnerSlots.SliceEncoder encoder =
          (start, rows) -> {
            encoded.incrementAndGet();
            return BatchEncoder.encodeBatch(
                List.of(in), List.of(Udfs.type("BIGINT")), start, rows, Udfs.type("BIGINT"));
          };
      CompletableFuture<RunnerSlots.Computed> first = call(slots, encoder, () -> false);
      until("the runner holds the first call", () -> encoded.get() == 1);
      CompletableFuture<RunnerSlots.Computed> second = call(slots, encoder, () -> false);
      AtomicBoolean gone = new AtomicBoolean();
      // Looked at only when woken (as a cancelled Flight call's handler wakes it), never by time.
      java.util.concurrent.atomic.AtomicReference<Thread> waiter =
          new java.util.concurrent.atomic.AtomicReference<>();
      CompletableFuture<RunnerSlots.Computed> third =
          call(slots, encoder, Cancellation.waking(gone::get, Duration.ofDays(1)), waiter);
      // Both wait behind the held call, queued; one may have been sent ahead to the busy runner
      // (and encoded for that), never both.
      until("the other two are queued or sent ahead", () -> encoded.get() + queued(slots) == 3);
      assertThat(encoded.get()).isLessThanOrEqualTo(2);
      assertThat(first).isNotDone();

      gone.set(true);
      java.util.concurrent.locks.LockSupport.unpark(waiter.get());
      assertThatThrownBy(() -> third.get(10, TimeUnit.SECONDS))
          .cause()
          .isInstanceOfSatisfying(
              KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.CALL_CANCELLED));
      Files.createFile(release);
      assertThat(first.get(30, TimeUnit.SECONDS).rows()).containsExactly(1);
      assertThat(second.get(30, TimeUnit.SECONDS).rows()).containsExactly(1);
      assertThat(encoded.get()).as("the left call's slice was never encoded").isEqualTo(2);
    } finally {
      slots.close();
    }
  }

  private static void until(String what, java.util.function.BooleanSupplier condition) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!condition.getAsBoolean()) {
      assertThat(System.nanoTime()).as(what).isLessThan(deadline);
      java.util.concurrent.locks.LockSupport.parkNanos(1_000_000);
    }
  }

  private static int queued(RunnerSlots slots) {
    return slots.queuedForTests();
  }

  private static CompletableFuture<RunnerSlots.Computed> call(
      RunnerSlots slots, RunnerSlots.SliceEncoder encoder, Cancellation gone) {
    return call(slots, encoder, gone, new java.util.concurrent.atomic.AtomicReference<>());
  }

  private static CompletableFuture<RunnerSlots.Computed> call(
      RunnerSlots slots,
      RunnerSlots.SliceEncoder encoder,
      Cancellation gone,
      java.util.concurrent.atomic.AtomicReference<Thread> thread) {
    CompletableFuture<RunnerSlots.Computed> f = new CompletableFuture<>();
    Thread t =
        Thread.ofPlatform()
            .unstarted(
                () -> {
                  try {
                    f.complete(slots.compute(1, encoder, gone));
                  } catch (Throwable e) {
                    f.completeExceptionally(e);
                  }
                });
    thread.set(t);
    t.start();
    return f;
  }
}
