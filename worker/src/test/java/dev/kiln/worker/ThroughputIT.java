package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.RuntimeSpec;
import dev.kiln.definition.Tenant;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Measures rows/s of {@code add(BIGINT, BIGINT)} at 65,536-row batches through RunnerPool alone and
 * through FlightEndpoint + RunnerPool (called as Databend calls it, by {@link ThroughputClient} in
 * its own JVM), next to the same function in a plain Python loop. Prints the numbers and the CPU
 * each part used; asserts only that the results are right, since speed depends on the machine (and
 * here the client shares it).
 *
 * <pre>
 * ./mvnw -B verify -pl worker -Dit.test=ThroughputIT -Dtest=NONE -Dsurefire.failIfNoSpecifiedTests=false
 * </pre>
 */
class ThroughputIT {

  static final int ROWS = ThroughputClient.ROWS;
  static final int BATCHES = 160;
  static final int WARMUP = 200;

  /** Databend keeps up to 256 calls in flight; a few keep the runners busy. */
  static final int IN_FLIGHT = 4;

  static final String CODE = "def add(a, b):\n    return a + b\n";

  @TempDir Path dir;

  /** rows/s, and CPU milliseconds per batch of the worker JVM, the runners and the client. */
  record Run(double rowsPerSecond, double workerCpuMs, double runnerCpuMs, double clientCpuMs) {}

  @Test
  void addBigintBigint() throws Exception {
    RuntimeSpec spec = Udfs.spec("add", List.of("BIGINT", "BIGINT"), "BIGINT", CODE);
    double plainLoop = plainPythonLoop();
    Run pool = poolOnly(spec);
    throughFlight(spec, 1); // warms up the endpoint's code paths; not reported
    Run one = throughFlight(spec, 1);
    Run two = throughFlight(spec, 2);

    String row = "  %-58s %,11.0f rows/s %4.0f%%   worker %4.1f  runners %4.1f  client %4.1f%n";
    System.out.printf(
        "%nadd(BIGINT, BIGINT), %,d-row batches, %d cores; CPU in ms per batch:%n"
            + "  %-58s %,11.0f rows/s%n",
        ROWS,
        Runtime.getRuntime().availableProcessors(),
        "plain Python loop: for a, b in zip(xs, ys): out.append(add(a, b))",
        plainLoop);
    print(row, "RunnerPool.call, 1 runner, no Flight", pool, plainLoop);
    print(
        row,
        "Flight + 1 runner, " + IN_FLIGHT + " calls in flight (client in its own JVM)",
        one,
        plainLoop);
    print(
        row,
        "Flight + 2 runners, " + IN_FLIGHT + " calls in flight (client in its own JVM)",
        two,
        plainLoop);
    System.out.println();
  }

  private static void print(String format, String name, Run run, double plainLoop) {
    System.out.printf(
        format,
        name,
        run.rowsPerSecond(),
        100 * run.rowsPerSecond() / plainLoop,
        run.workerCpuMs(),
        run.runnerCpuMs(),
        run.clientCpuMs());
  }

  private Run poolOnly(RuntimeSpec spec) throws Exception {
    try (BufferAllocator allocator = new RootAllocator();
        RunnerPool pool =
            RunnerPool.start(
                UdfSignature.of(spec),
                new HostRunnerLauncher(dir.resolve("pool"), spec),
                RunnerPool.Options.defaults());
        org.apache.arrow.vector.VectorSchemaRoot in = ThroughputClient.input(allocator)) {
      List<FieldVector> inputs = in.getFieldVectors();
      for (int i = 0; i < WARMUP; i++) {
        pool.call(inputs, ROWS, allocator).close();
      }
      long worker = jvmCpuNanos();
      long runners = runnerCpuNanos();
      long started = System.nanoTime();
      for (int i = 0; i < BATCHES; i++) {
        try (FieldVector out = pool.call(inputs, ROWS, allocator)) {
          assertThat(out.getValueCount()).isEqualTo(ROWS);
        }
      }
      double seconds = (System.nanoTime() - started) / 1e9;
      return new Run(
          BATCHES * (double) ROWS / seconds,
          (jvmCpuNanos() - worker) / 1e6 / BATCHES,
          (runnerCpuNanos() - runners) / 1e6 / BATCHES,
          0);
    }
  }

  private Run throughFlight(RuntimeSpec spec, int runners) throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    ContentKey key = new ContentKey("ee".repeat(32));
    Tokens tokens = new Tokens(new byte[32]);
    MapDirectory directory = new MapDirectory();
    MapDirectory.Handle handle = new MapDirectory.Handle(UdfSignature.of(spec));
    directory.put("t", key, handle);
    try (FlightEndpoint endpoint =
            FlightEndpoint.start(
                new FlightEndpoint.Config("127.0.0.1", 0, Duration.ofSeconds(30)),
                tokens,
                directory,
                meters);
        RunnerPool pool =
            RunnerPool.start(
                UdfSignature.of(spec),
                new HostRunnerLauncher(dir.resolve("flight" + runners), spec),
                new RunnerPool.Options(
                    runners, Duration.ofSeconds(30), Duration.ofSeconds(300), 50))) {
      handle.ready.complete(pool);
      // The client warms up first, then measures; the worker's counters cover both, so they
      // are read once the warm-up is over, when the endpoint has answered WARMUP calls.
      Counter batches = meters.counter("kiln.worker.batches", "handler", "add", "tenant", "t");
      double before = batches.count();
      CompletableFuture<double[]> client =
          CompletableFuture.supplyAsync(
              () -> client(endpoint.port(), tokens.issue(new Tenant("t"), key)));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(300);
      while (batches.count() - before < WARMUP && System.nanoTime() < deadline) {
        LockSupport.parkNanos(1_000_000);
      }
      long worker = jvmCpuNanos();
      long runnerCpu = runnerCpuNanos();
      double measuredFrom = batches.count();
      double[] result = client.get(300, TimeUnit.SECONDS);
      double measured = batches.count() - measuredFrom;
      return new Run(
          result[0],
          (jvmCpuNanos() - worker) / 1e6 / measured,
          (runnerCpuNanos() - runnerCpu) / 1e6 / measured,
          result[1] / 1e6);
    }
  }

  /** Runs {@link ThroughputClient} in a new JVM; returns {rows/s, its CPU ns per batch}. */
  private static double[] client(int port, String token) {
    try {
      return runClient(port, token);
    } catch (Exception e) {
      throw new IllegalStateException(e);
    }
  }

  private static double[] runClient(int port, String token) throws Exception {
    List<String> command = new ArrayList<>();
    command.add(ProcessHandle.current().info().command().orElse("java"));
    command.addAll(
        ManagementFactory.getRuntimeMXBean().getInputArguments().stream()
            .filter(a -> a.startsWith("--add-opens") || a.startsWith("-Dio.netty"))
            .toList());
    command.addAll(
        List.of(
            "-cp",
            System.getProperty("java.class.path"),
            ThroughputClient.class.getName(),
            Integer.toString(port),
            token,
            "t",
            Integer.toString(WARMUP),
            Integer.toString(BATCHES),
            Integer.toString(IN_FLIGHT)));
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(300, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).as(out).isZero();
    String rate = out.lines().filter(l -> l.startsWith("rows/s=")).findFirst().orElseThrow();
    String cpu =
        out.lines().filter(l -> l.startsWith("cpu_ns_per_batch=")).findFirst().orElseThrow();
    return new double[] {
      Double.parseDouble(rate.substring("rows/s=".length())),
      Double.parseDouble(cpu.substring("cpu_ns_per_batch=".length()))
    };
  }

  private static long jvmCpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  private static long runnerCpuNanos() {
    return ProcessHandle.current()
        .children()
        .filter(p -> p.info().commandLine().orElse("").contains("kiln_runner.py"))
        .mapToLong(p -> p.info().totalCpuDuration().map(Duration::toNanos).orElse(0L))
        .sum();
  }

  private static double plainPythonLoop() throws IOException, InterruptedException {
    String script =
        CODE
            + "import time\n"
            + "xs = list(range("
            + ROWS
            + "))\nys = [1000000 * i for i in xs]\n"
            + "best = 0\n"
            + "for _ in range(5):\n"
            + "    t = time.perf_counter()\n"
            + "    for _ in range(10):\n"
            + "        out = []\n"
            + "        for a, b in zip(xs, ys):\n"
            + "            out.append(add(a, b))\n"
            + "    best = max(best, 10 * len(xs) / (time.perf_counter() - t))\n"
            + "print(best)\n";
    Process p = new ProcessBuilder("python3", "-c", script).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    assertThat(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).as(out).isZero();
    return Double.parseDouble(out);
  }
}
