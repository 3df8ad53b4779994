package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.SequenceInputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.InstantSource;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import java.util.function.LongSupplier;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Slot scheduling against runner processes faked in this JVM (no Python), on a fake ticker: the
 * restart backoff is checked to the nanosecond without the test sleeping.
 */
class RunnerSlotsTest {

  private BufferAllocator allocator;
  private RunnerPool pool;

  @BeforeEach
  void setUp() {
    allocator = new RootAllocator();
  }

  @AfterEach
  void tearDown() {
    if (pool != null) {
      pool.close();
    }
    allocator.close();
  }

  @Test
  void aReplacementThatCannotStartIsRetriedWithABackoffDoublingUpTo30Seconds() throws Exception {
    FakeTicker ticker = new FakeTicker();
    FakeLauncher launcher = new FakeLauncher(ticker, 2);
    pool =
        RunnerPool.start(
            new UdfSignature("f", List.of(Udfs.type("BIGINT")), Udfs.type("BIGINT")),
            launcher,
            new RunnerPool.Options(2, Duration.ofSeconds(30), Duration.ofSeconds(30), 50),
            new TimeSource(InstantSource.system(), ticker));

    // The runner that gets the batch dies; the other one stays alive, so its slot backs off.
    try (FieldVector in = Vectors.of(allocator, "arg1", new ArrowType.Int(64, true), List.of(1L))) {
      assertThatThrownBy(() -> pool.call(List.of(in), 1, allocator))
          .isInstanceOfSatisfying(
              KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.RUNNER_CRASHED))
          .hasMessageContaining("killed by SIGABRT");
    }
    awaitTrue(() -> launcher.refused.size() == 1, "the first replacement attempt");
    assertThat(launcher.refused.get(0)).isZero();
    assertThat(pool.isHealthy()).isTrue();

    long last = 0;
    for (long seconds : new long[] {1, 2, 4, 8, 16, 30, 30}) {
      int attempts = launcher.refused.size();
      ticker.awaitReads(1); // the slot has read the time its backoff runs from
      ticker.advance(TimeUnit.SECONDS.toNanos(seconds) - 1);
      ticker.awaitReads(2);
      assertThat(launcher.refused).as("attempts 1 ns before %d s", seconds).hasSize(attempts);

      ticker.advance(1);
      awaitTrue(() -> launcher.refused.size() == attempts + 1, "the attempt after " + seconds);
      assertThat(launcher.refused.get(attempts) - last)
          .isEqualTo(TimeUnit.SECONDS.toNanos(seconds));
      last = launcher.refused.get(attempts);
    }

    launcher.allowed.set(1);
    ticker.awaitReads(1);
    ticker.advance(TimeUnit.SECONDS.toNanos(30));
    awaitTrue(() -> pool.stats().liveRunners() == 2, "the replacement runner");
    assertThat(pool.stats().restarts()).isEqualTo(1);
  }

  private static void awaitTrue(BooleanSupplier condition, String what) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!condition.getAsBoolean()) {
      assertThat(System.nanoTime() - deadline).as("waiting for %s", what).isNegative();
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(1));
    }
  }

  /**
   * A ticker that moves only when told, and counts its reads (each read and its count at once): a
   * read counted after an advance returns the advanced time, and one counted after an attempt was
   * seen has taken the time that attempt's backoff runs from.
   */
  private static final class FakeTicker implements LongSupplier {
    private long now;
    private long reads;

    @Override
    public synchronized long getAsLong() {
      reads++;
      return now;
    }

    synchronized long peek() {
      return now;
    }

    synchronized void advance(long nanos) {
      now += nanos;
    }

    private synchronized long reads() {
      return reads;
    }

    /** Waits until the ticker has been read {@code more} times from now. */
    void awaitReads(int more) {
      long base = reads();
      awaitTrue(() -> reads() >= base + more, more + " more reads of the ticker");
    }
  }

  /**
   * Starts {@code allowed} fake runners, then refuses, noting the ticker's time of each refusal.
   */
  private static final class FakeLauncher implements RunnerLauncher {
    final AtomicInteger allowed;
    final List<Long> refused = new CopyOnWriteArrayList<>();
    private final FakeTicker ticker;

    FakeLauncher(FakeTicker ticker, int allowed) {
      this.ticker = ticker;
      this.allowed = new AtomicInteger(allowed);
    }

    @Override
    public RunnerProcess launch(List<String> env) throws IOException {
      if (allowed.getAndDecrement() > 0) {
        return new FakeRunner();
      }
      refused.add(ticker.peek());
      throw new IOException("no room for another process");
    }
  }

  /**
   * A runner that is ready at once and aborts (exit status 134, SIGABRT) when it is sent a batch;
   * closing its stdin ends it cleanly.
   */
  private static final class FakeRunner implements RunnerProcess {
    private final CompletableFuture<Integer> exited = new CompletableFuture<>();
    private final InputStream stdout;
    private final OutputStream stdin =
        new OutputStream() {
          @Override
          public void write(int b) {
            exited.complete(134);
          }

          @Override
          public void write(byte[] b, int off, int len) {
            exited.complete(134);
          }

          @Override
          public void close() {
            exited.complete(0);
          }
        };

    FakeRunner() {
      byte[] json =
          "{\"protocol\": 2, \"handler\": \"f\", \"pid\": 7, \"python\": \"3.11.2\"}"
              .getBytes(StandardCharsets.UTF_8);
      ByteBuffer ready = ByteBuffer.allocate(5 + json.length).order(ByteOrder.LITTLE_ENDIAN);
      ready.putInt(json.length).put((byte) FrameIO.READY).put(json);
      InputStream untilExit =
          new InputStream() {
            @Override
            public int read() {
              exited.join();
              return -1;
            }
          };
      stdout = new SequenceInputStream(new ByteArrayInputStream(ready.array()), untilExit);
    }

    @Override
    public OutputStream stdin() {
      return stdin;
    }

    @Override
    public InputStream stdout() {
      return stdout;
    }

    @Override
    public InputStream stderr() {
      return InputStream.nullInputStream();
    }

    @Override
    public boolean isAlive() {
      return !exited.isDone();
    }

    @Override
    public CompletableFuture<Integer> exited() {
      return exited;
    }

    @Override
    public void kill() {
      exited.complete(137);
    }
  }
}
