package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Consumer;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStatusCode;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.LargeVarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ViewVarCharVector;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * The data path under load and under failure, through real gVisor sandboxes with two runners each:
 * Databend's pattern of many 65,536-row calls at once, each on a new connection; and every way a
 * runner can die (segfault, abort, {@code os._exit}, its memory limit, a batch that never returns)
 * failing only the call it was serving, while a call on the other runner succeeds and the next call
 * works.
 */
class ConcurrencyEndToEndIT {
  static final String TENANT = "acme";
  static final int ROWS = 65_536;
  static final int CALLS = 64;
  static final Duration BATCH_TIMEOUT = Duration.ofSeconds(3);

  static final String CRASH_CODE =
      """
      import ctypes, os, time

      def crash(kind, x):
          if kind == 'segv':
              ctypes.string_at(0)
          elif kind == 'abort':
              os.abort()
          elif kind == 'exit':
              os._exit(7)
          elif kind == 'memory':
              hoard = bytearray(1 << 30)
          elif kind == 'hang':
              time.sleep(3600)
          elif kind == 'slow':
              time.sleep(1.5)
          elif kind == 'raise':
              print('looking at row', x, flush=True)
              raise ValueError('bad row %d' % x)
          return x + 1
      """;

  @TempDir static Path dataDir;
  static RunningKiln kiln;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void startKiln() throws Exception {
    kiln =
        RunningKiln.start(
            dataDir,
            config -> config.runnersPerSandbox(2).sandboxCpus(2).batchTimeout(BATCH_TIMEOUT));
  }

  @AfterAll
  static void stopKiln() throws Exception {
    if (kiln != null) {
      kiln.close();
    }
  }

  @Test
  void sixtyFourConcurrentCallsOfAFullBatchOnNewConnectionsAreAllRight() throws Exception {
    String code = "def mix(a, s):\n    return None if s is None else '%s:%d' % (s, a * 2)\n";
    DatabendClient.Resource r =
        kiln.api()
            .apply(
                TENANT, spec("mix", List.of("BIGINT NULL", "VARCHAR NULL"), "VARCHAR NULL", code));
    // Wait for the sandbox once, so the 64 calls measure the data path, not the cold start.
    KilnTestSupport.call(
        allocator, r, TENANT, "mix", List.of("BIGINT NULL", "VARCHAR NULL"), "[[1,\"warm\"]]");

    List<Callable<Integer>> calls = new ArrayList<>();
    CountDownLatch go = new CountDownLatch(1);
    for (int c = 0; c < CALLS; c++) {
      int id = c;
      calls.add(
          () -> {
            go.await();
            return callMix(r, id);
          });
    }
    try (ExecutorService threads = Executors.newFixedThreadPool(CALLS)) {
      List<Future<Integer>> done = new ArrayList<>();
      for (Callable<Integer> call : calls) {
        done.add(threads.submit(call));
      }
      go.countDown();
      for (Future<Integer> f : done) {
        assertThat(f.get(300, TimeUnit.SECONDS)).isEqualTo(ROWS);
      }
    }
  }

  /** One 65,536-row call on its own connection, as Databend makes it; checks every row. */
  private int callMix(DatabendClient.Resource r, int id) throws Exception {
    URI uri = URI.create(r.endpoint());
    ManagedChannel channel =
        NettyChannelBuilder.forAddress(uri.getHost(), uri.getPort())
            .usePlaintext()
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .build();
    try (BufferAllocator calls = allocator.newChildAllocator("call-" + id, 0, Long.MAX_VALUE);
        VectorSchemaRoot in = mixInput(calls, id)) {
      awaitConnected(channel);
      try (FlightClient client = FlightGrpcUtils.createFlightClient(calls, channel);
          FlightClient.ExchangeReaderWriter x =
              client.doExchange(
                  FlightDescriptor.path("mix"),
                  KilnTestSupport.databendHeaders(r, TENANT, "mix", "concurrency-it"),
                  CallOptions.timeout(300, TimeUnit.SECONDS))) {
        x.getWriter().start(in);
        // Flight's client spins in putNext until the stream is ready; wait politely instead.
        while (!x.getWriter().isReady()) {
          LockSupport.parkNanos(200_000);
        }
        x.getWriter().putNext();
        x.getWriter().completed();
        assertThat(x.getReader().next()).isTrue();
        VectorSchemaRoot out = x.getReader().getRoot();
        assertThat(out.getRowCount()).isEqualTo(ROWS);
        LargeVarCharVector result = (LargeVarCharVector) out.getVector(0);
        for (int i = 0; i < ROWS; i++) {
          String expected =
              i % 1000 == 7 ? null : "c" + id + "-" + i + ":" + 2L * (id * 100_000L + i);
          String actual =
              result.isNull(i) ? null : new String(result.get(i), StandardCharsets.UTF_8);
          if (expected == null ? actual != null : !expected.equals(actual)) {
            throw new AssertionError(
                "call " + id + " row " + i + ": " + actual + " != " + expected);
          }
        }
        assertThat(x.getReader().next()).isFalse();
        return out.getRowCount();
      }
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  private static VectorSchemaRoot mixInput(BufferAllocator allocator, int id) {
    BigIntVector a = new BigIntVector("arg1", allocator);
    ViewVarCharVector s = new ViewVarCharVector("arg2", allocator);
    a.allocateNew(ROWS);
    s.allocateNew(ROWS);
    for (int i = 0; i < ROWS; i++) {
      a.set(i, id * 100_000L + i);
      if (i % 1000 == 7) {
        s.setNull(i);
      } else {
        s.setSafe(i, ("c" + id + "-" + i).getBytes(StandardCharsets.UTF_8));
      }
    }
    a.setValueCount(ROWS);
    s.setValueCount(ROWS);
    VectorSchemaRoot root = new VectorSchemaRoot(List.of(a, s));
    root.setRowCount(ROWS);
    return root;
  }

  @Test
  void eachWayARunnerDiesFailsOnlyItsCallAndTheNextCallWorks() throws Exception {
    DatabendClient.Resource r = crashUdf();
    expectFailure(r, "segv", "the UDF process died while computing this batch (killed by SIGSEGV)");
    expectFailure(r, "abort", "(killed by SIGABRT)");
    expectFailure(r, "exit", "(exited with status 7)");
    long perRunnerMiB = dev.kiln.worker.RunnerPool.Options.memoryPerRunner(512L << 20, 2) >> 20;
    expectFailure(
        r,
        "memory",
        "the UDF process was killed: memory limit "
            + perRunnerMiB
            + " MiB exceeded"
            + " (MemoryError in udf.py line 11, in crash)");
    assertThat(crash(r, "ok", 41)).isEqualTo(42L);
  }

  @Test
  void aBatchThatNeverReturnsIsStoppedAfterTheBatchTimeout() throws Exception {
    DatabendClient.Resource r = crashUdf();
    assertCrashFails(
        r,
        "hang",
        1,
        e -> {
          assertThat(e.status().code()).isEqualTo(FlightStatusCode.TIMED_OUT);
          assertThat(e.status().description())
              .contains("the UDF did not return within 3 s for a batch of 1 rows");
        });
    assertThat(crash(r, "ok", 1)).isEqualTo(2L);
  }

  @Test
  void aPythonErrorQuotesTheUdfsOutput() throws Exception {
    DatabendClient.Resource r = crashUdf();
    assertCrashFails(
        r,
        "raise",
        5,
        e ->
            assertThat(e.status().description())
                .contains("ValueError: bad row 5 (udf.py line 18, in crash")
                .contains("Last output of the UDF process:")
                .contains("looking at row 5"));
  }

  private DatabendClient.Resource crashUdf() {
    return kiln.api()
        .apply(
            TENANT,
            spec("crash", List.of("VARCHAR NULL", "BIGINT NULL"), "BIGINT NULL", CRASH_CODE));
  }

  /**
   * Runs a failing call while a slow call occupies the other runner: the failure names what
   * happened, the slow call is unharmed, and a new call works.
   */
  private void expectFailure(DatabendClient.Resource r, String kind, String message)
      throws Exception {
    try (ExecutorService threads = Executors.newSingleThreadExecutor()) {
      Future<Long> slow = threads.submit(() -> crash(r, "slow", 10));
      assertCrashFails(r, kind, 1, e -> assertThat(e.status().description()).contains(message));
      assertThat(slow.get(60, TimeUnit.SECONDS)).as("the call on the other runner").isEqualTo(11L);
    }
    assertThat(crash(r, "ok", 1)).as("the next call after " + kind).isEqualTo(2L);
  }

  /** Asserts that the crash UDF fails on this row with a Flight error that passes {@code check}. */
  private void assertCrashFails(
      DatabendClient.Resource r, String kind, long x, Consumer<FlightRuntimeException> check) {
    assertThatThrownBy(() -> crash(r, kind, x))
        .as(kind)
        .isInstanceOfSatisfying(FlightRuntimeException.class, check);
  }

  private long crash(DatabendClient.Resource r, String kind, long x) throws Exception {
    List<List<Object>> out =
        KilnTestSupport.call(
            allocator,
            r,
            TENANT,
            "crash",
            List.of("VARCHAR NULL", "BIGINT NULL"),
            "[[\"" + kind + "\"," + x + "]]");
    return ((Number) out.get(0).get(0)).longValue();
  }

  private static void awaitConnected(ManagedChannel channel) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    ConnectivityState state = channel.getState(true);
    while (state != ConnectivityState.READY) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("no connection to the endpoint: " + state);
      }
      CountDownLatch changed = new CountDownLatch(1);
      channel.notifyWhenStateChanged(state, changed::countDown);
      changed.await(1, TimeUnit.SECONDS);
      state = channel.getState(true);
    }
  }
}
