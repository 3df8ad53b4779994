package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.RuntimeSpec;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.LongStream;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The runner pool over its second transport: a real runner listener ({@code kiln_runner.py listen},
 * as a sandbox pod runs it) on loopback, forking a runner per connection, and {@link
 * TcpRunnerLauncher} connecting to it.
 */
class TcpRunnersIT {
  private static final ArrowType INT64 = new ArrowType.Int(64, true);
  private static final String ADD = "def add(a, b):\n    return None if a is None else a + b\n";

  @TempDir Path dir;
  private BufferAllocator allocator;
  private final List<AutoCloseable> closeables = new ArrayList<>();

  @BeforeEach
  void setUp() {
    allocator = new RootAllocator();
  }

  @AfterEach
  void tearDown() throws Exception {
    for (AutoCloseable c : closeables.reversed()) {
      c.close();
    }
    allocator.close(); // fails the test on a leaked buffer
  }

  /** A listener for the UDF and a pool of {@code runners} connected to it. */
  private RunnerPool start(RuntimeSpec spec, int runners) throws Exception {
    HostRunnerLauncher files = new HostRunnerLauncher(dir.resolve("udf"), spec);
    HostRunnerLauncher.Listener listener = files.listen();
    closeables.add(listener);
    RunnerPool pool =
        RunnerPool.start(
            UdfSignature.of(spec),
            new TcpRunnerLauncher(listener.address(), Duration.ofSeconds(5)),
            new RunnerPool.Options(runners, Duration.ofSeconds(30), Duration.ofSeconds(30), 50));
    closeables.add(pool);
    return pool;
  }

  private List<Object> call(RunnerPool pool, List<?>... columns) throws Exception {
    List<FieldVector> inputs = new ArrayList<>();
    try {
      for (int i = 0; i < columns.length; i++) {
        inputs.add(Vectors.of(allocator, "arg" + (i + 1), INT64, columns[i]));
      }
      try (FieldVector out = pool.call(inputs, columns[0].size(), allocator)) {
        return Vectors.values(out);
      }
    } finally {
      inputs.forEach(FieldVector::close);
    }
  }

  @Test
  void batchesLargeAndSmallAreComputedByRunnersOverTcp() throws Exception {
    RunnerPool pool =
        start(Udfs.spec("add", List.of("BIGINT NULL", "BIGINT NULL"), "BIGINT NULL", ADD), 2);
    List<Long> a = new ArrayList<>(LongStream.range(0, 100_000).boxed().toList());
    a.set(7, null);
    List<Long> b = LongStream.range(0, 100_000).map(i -> 3 * i).boxed().toList();
    List<Object> out = call(pool, a, b);
    assertThat(out).hasSize(100_000);
    assertThat(out.get(7)).isNull();
    assertThat(out.get(99_999)).isEqualTo(4 * 99_999L);
    assertThat(call(pool, List.of(20L), List.of(1L))).containsExactly(21L);
    assertThat(pool.stats().liveRunners()).isEqualTo(2);
  }

  @Test
  void aRunnerWhoseStreamsDoNotBlockServesEveryRow() throws Exception {
    // A TCP connection under gVisor's host network reads "nothing yet" even when set to block; a
    // runner that took that for the end of its input died on its first batch in a sandbox pod.
    RuntimeSpec spec = Udfs.spec("add", List.of("BIGINT NULL", "BIGINT NULL"), "BIGINT NULL", ADD);
    RunnerPool pool =
        RunnerPool.start(
            UdfSignature.of(spec),
            HostRunnerLauncher.nonBlocking(dir.resolve("udf"), spec),
            new RunnerPool.Options(1, Duration.ofSeconds(30), Duration.ofSeconds(30), 50));
    closeables.add(pool);
    assertThat(call(pool, List.of(20L), List.of(1L))).containsExactly(21L);
    // 400,000 rows: 6 MiB in, 3 MiB out, more than a pipe holds either way.
    List<Long> a = LongStream.range(0, 400_000).boxed().toList();
    List<Object> out = call(pool, a, a);
    assertThat(out).hasSize(400_000);
    assertThat(out.get(399_999)).isEqualTo(2 * 399_999L);
    assertThat(pool.stats().restarts()).isZero();
  }

  @Test
  void aUdfErrorNamesItsLineAndTheRunnerServesOn() throws Exception {
    String code = "def divide(a, b):\n    q = a // b\n    return q\n";
    RunnerPool pool = start(Udfs.spec("divide", List.of("BIGINT", "BIGINT"), "BIGINT", code), 1);
    assertThatThrownBy(() -> call(pool, List.of(6L, 1L), List.of(3L, 0L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_RAISED))
        .hasMessageContaining("ZeroDivisionError")
        .hasMessageContaining("udf.py line 2, in divide");
    assertThat(call(pool, List.of(6L), List.of(3L))).containsExactly(2L);
    assertThat(pool.stats().restarts()).isZero();
  }

  @Test
  void aRunnerThatDiesIsReplacedByANewConnection() throws Exception {
    String code = "import os\n\ndef quit(x):\n    if x < 0:\n        os._exit(3)\n    return x\n";
    RunnerPool pool = start(Udfs.spec("quit", List.of("BIGINT"), "BIGINT", code), 1);
    assertThatThrownBy(() -> call(pool, List.of(-1L)))
        .isInstanceOf(KilnException.class)
        .hasMessageContaining("died while computing this batch")
        .hasMessageContaining("the connection to the runner at 127.0.0.1:");
    // The listener forks a fresh runner for the pool's next connection; the call waits for it.
    assertThat(call(pool, List.of(5L))).containsExactly(5L);
    assertThat(pool.stats().restarts()).isEqualTo(1);
  }

  @Test
  void withNothingListeningThePoolSaysWhereItLooked() throws Exception {
    int port;
    try (ServerSocket free = new ServerSocket(0)) {
      port = free.getLocalPort();
    }
    RuntimeSpec spec = Udfs.spec("add", List.of("BIGINT", "BIGINT"), "BIGINT", ADD);
    InetSocketAddress nowhere = new InetSocketAddress("127.0.0.1", port);
    assertThatThrownBy(
            () ->
                RunnerPool.start(
                    UdfSignature.of(spec),
                    new TcpRunnerLauncher(nowhere, Duration.ofSeconds(2)),
                    new RunnerPool.Options(1, Duration.ofSeconds(10), Duration.ofSeconds(10), 50)))
        .isInstanceOf(KilnException.class)
        .hasMessageContaining("cannot reach the UDF's runners at")
        .hasMessageContaining(":" + port);
  }
}
