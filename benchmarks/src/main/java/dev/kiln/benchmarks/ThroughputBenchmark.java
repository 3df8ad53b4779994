package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.worker.RunnerPool;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.LargeVarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ViewVarCharVector;

/**
 * Rows per second of UDFs through the whole data path, against the CPython limit measured in the
 * same run: a real Kiln server, gVisor sandboxes with {@code sandbox-cpus} = this machine's cores,
 * Databend's calls (65,536-row batches, Utf8View strings, each call on a new connection, several in
 * flight so no runner waits) for {@code add(BIGINT, BIGINT)} and {@code concat(VARCHAR, VARCHAR)},
 * with one runner per sandbox and then one per core.
 *
 * <p>The peer is the same function over the same rows in a plain Python loop ({@code for a, b in
 * zip(xs, ys): out.append(f(a, b))}) in one process with no I/O: the most one CPython process can
 * do. It runs inside a sandbox of the same image, so it is the same Python (the base image's
 * python3) under the same gVisor, measured as a UDF that times the loop and returns rows/s (the
 * median of 21 runs; the best run is reported too). Ratios use the median, since the worker's rate
 * is an average over the whole measurement and both see the same load.
 *
 * <p>Two modes, both by default. {@code flight} is the whole data path as above: the client runs in
 * its own JVM and shares the machine's cores with the worker and the sandboxes, so on a small
 * machine the figures are a lower bound. {@code pool} is the worker level: the worker's {@link
 * RunnerPool} exactly as the control plane starts it (runners in a gVisor sandbox of the UDF's
 * image, same limits), fed pre-built batches in this JVM with no Flight and no client; its peer is
 * the same plain-loop UDF, run by a runner in the same sandbox.
 *
 * <p>A third mode, {@code fast-client} ({@link FastClientThroughput}), drives the server from a
 * native (pyarrow) client as Databend's is, with up to 256 calls in flight, and measures one-row
 * latency against a plain pyarrow Flight server.
 *
 * <p>Run: {@code bin/bench throughput [--mode pool|flight|both|fast-client] [seconds per
 * measurement, default 15] [calls in flight per runner, default 2]}. Writes {@code
 * benchmarks/target/results/throughput.json}: the end-to-end figures at the top level ({@code
 * results}), the worker-level ones under {@code worker_pool}; a mode not run keeps what an earlier
 * run wrote.
 */
public final class ThroughputBenchmark {
  static final ObjectMapper JSON = new ObjectMapper();
  static final String TENANT = "bench";
  static final int ROWS = 65_536;

  static final String LOOP =
      """
      import time

      def %1$s_loop(reps):
          xs, ys = rows()
          rates = []
          for _ in range(abs(reps)):
              t = time.perf_counter()
              out = []
              for a, b in zip(xs, ys):
                  out.append(%1$s(a, b))
              rates.append(len(xs) / (time.perf_counter() - t))
          rates.sort()
          return rates[-1] if reps < 0 else rates[len(rates) // 2]
      """;

  static final String ADD =
      "def add(a, b):\n    return a + b\n\n"
          + "def rows():\n    xs = list(range(%d))\n    return xs, [1000000 * x for x in xs]\n";

  static final String CONCAT =
      "def concat(a, b):\n    return a + b\n\n"
          + "def rows():\n    xs = list(range(%d))\n"
          + "    return ['left-%%d' %% x for x in xs], ['right-%%d' %% x for x in xs]\n";

  /** A function under test: its code, the plain-loop UDF over the same rows, and its inputs. */
  enum Function {
    ADD_BIGINT("add", "BIGINT", ADD),
    CONCAT_VARCHAR("concat", "VARCHAR", CONCAT);

    final String handler;
    final String type;
    final String code;

    Function(String handler, String type, String body) {
      this.handler = handler;
      this.type = type;
      this.code = body.formatted(ROWS);
    }

    String title() {
      return handler + "(" + type + ", " + type + ")";
    }
  }

  private ThroughputBenchmark() {}

  public static void main(String[] args) throws Exception {
    if (args.length > 0 && args[0].equals("--client")) {
      FlightThroughput.client(args);
      return;
    }
    String mode = "both";
    List<String> positional = new ArrayList<>();
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--mode") && i + 1 < args.length) {
        mode = args[++i];
      } else if (args[i].startsWith("--mode=")) {
        mode = args[i].substring("--mode=".length());
      } else {
        positional.add(args[i]);
      }
    }
    if (!List.of("pool", "flight", "both", "fast-client").contains(mode)) {
      System.err.println(
          "usage: ThroughputBenchmark [--mode pool|flight|both] [seconds per measurement]"
              + " [calls in flight per runner]\n"
              + "       ThroughputBenchmark --mode fast-client [seconds per repetition]"
              + " [--in-flight 256,64,8] [--reps 5] [--sandbox-cpus 2] [--latency-calls 300]");
      System.exit(2);
    }
    Path out = Path.of("benchmarks/target/results/throughput.json");
    ObjectNode report = readReport(out);
    if (mode.equals("fast-client")) {
      FastClientThroughput.run(FastClientThroughput.Settings.parse(positional), report);
      writeReport(out, report);
      return;
    }
    Duration measure =
        Duration.ofSeconds(positional.size() > 0 ? Long.parseLong(positional.get(0)) : 15);
    int inFlightPerRunner = positional.size() > 1 ? Integer.parseInt(positional.get(1)) : 2;

    ArrayNode poolRows = null;
    ArrayNode flightRows = null;
    if (!mode.equals("flight")) {
      poolRows = PoolThroughput.pool(measure, inFlightPerRunner, report);
    }
    if (!mode.equals("pool")) {
      flightRows = FlightThroughput.flight(measure, inFlightPerRunner, report);
    }
    if (poolRows != null) {
      System.out.println();
      System.out.println(
          "Worker level: the worker's RunnerPool fed pre-built batches in this JVM"
              + " (no Flight, no client JVM)");
      printTable(poolRows, false);
    }
    if (flightRows != null) {
      System.out.println();
      System.out.println(
          "End to end: a Kiln server, DoExchange on a new connection per batch from a client JVM");
      printTable(flightRows, true);
    }
    writeReport(out, report);
  }

  /** The results file as an earlier run wrote it: the modes not run now keep their figures. */
  static ObjectNode readReport(Path out) {
    if (Files.isRegularFile(out)) {
      try {
        if (JSON.readTree(out.toFile()) instanceof ObjectNode old) {
          return old;
        }
      } catch (java.io.IOException e) {
        System.err.println("ignoring unreadable " + out + ": " + e.getMessage());
      }
    }
    return JSON.createObjectNode();
  }

  static void writeReport(Path out, ObjectNode report) throws java.io.IOException {
    Files.createDirectories(out.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
    System.out.println("wrote " + out.toAbsolutePath());
  }

  /** Where the UDF images of the {@code pool} mode hold the plain-loop UDF. */
  static final String LOOP_DIR = "/kiln/bench-loop";

  /**
   * The plain-loop UDF: {@code f}'s code and a loop over its rows, as {@code flight} applies it.
   */
  static String loopSpec(Function f) {
    return spec(
        f.handler + "_loop",
        List.of("INT NULL"),
        "DOUBLE NULL",
        f.code + LOOP.formatted(f.handler));
  }

  /** The UDF's spec, as Databend sends it for the function. */
  static String udfSpec(Function f) {
    return spec(f.handler, List.of(f.type + " NULL", f.type + " NULL"), f.type + " NULL", f.code);
  }

  /** Waits (up to a minute) until this JVM uses under a tenth of a core: background work done. */
  static void awaitQuiet() throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (System.nanoTime() < deadline) {
      long cpu = workerCpuNanos();
      Thread.sleep(1000);
      if (workerCpuNanos() - cpu < 100_000_000L) {
        return;
      }
    }
  }

  static long workerCpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  /**
   * CPU of this JVM's JIT compiler threads (C1 and C2), which {@link #workerCpuNanos} includes: in
   * a benchmark of a minute or two they are still compiling the server's code paths, work a
   * long-running server has done once. From /proc (Linux only; 0 elsewhere). {@code bin/bench}
   * keeps the compiler threads for the JVM's life, so none of their CPU leaves with one that ends.
   */
  static long jitCpuNanos() {
    long sum = 0;
    try (var tasks = Files.newDirectoryStream(Path.of("/proc/self/task"))) {
      for (Path task : tasks) {
        try {
          String comm = Files.readString(task.resolve("comm")).strip();
          if (comm.startsWith("C1 CompilerThre") || comm.startsWith("C2 CompilerThre")) {
            // schedstat's first field: time on a CPU, in nanoseconds.
            sum += Long.parseLong(Files.readString(task.resolve("schedstat")).split(" ")[0]);
          }
        } catch (IOException | RuntimeException e) {
          // A thread that ended while we looked, or no schedstat: not counted.
        }
      }
    } catch (IOException e) {
      return 0;
    }
    return sum;
  }

  /**
   * CPU of the sandboxes: every process whose command line names the data directory (runsc and
   * gVisor's sandbox processes) and their descendants (gVisor's ptrace stubs, which run the Python
   * code).
   */
  static long sandboxCpuNanos() {
    String dir = dataDir.toString();
    java.util.Set<ProcessHandle> all = new java.util.HashSet<>();
    ProcessHandle.allProcesses()
        .filter(p -> p.info().commandLine().orElse("").contains(dir))
        .forEach(
            p -> {
              all.add(p);
              p.descendants().forEach(all::add);
            });
    return all.stream()
        .mapToLong(p -> p.info().totalCpuDuration().map(Duration::toNanos).orElse(0L))
        .sum();
  }

  static Path dataDir = Path.of("/nonexistent");

  /** One batch by one caller, with that caller's allocator and pre-built input. */
  interface Call {
    void call(BufferAllocator mine, VectorSchemaRoot in) throws Exception;
  }

  /**
   * Keeps {@code inFlight} callers going for {@code duration} (at least one call each), each thread
   * with its own allocator and pre-built input. Returns rows/s of completed calls, timed until the
   * last caller's last call ended (calls running at the deadline finish after it); puts the number
   * of batches in {@code batches[0]}.
   */
  static double keepCalling(
      BufferAllocator allocator,
      Function f,
      int inFlight,
      Duration duration,
      long[] batches,
      Call call)
      throws Exception {
    AtomicLong rows = new AtomicLong();
    long start = System.nanoTime();
    long end = start + duration.toNanos();
    long[] finished = new long[inFlight];
    try (ExecutorService threads = Executors.newFixedThreadPool(inFlight)) {
      List<Future<?>> callers = new ArrayList<>();
      for (int w = 0; w < inFlight; w++) {
        int caller = w;
        callers.add(
            threads.submit(
                () -> {
                  try (BufferAllocator mine =
                          allocator.newChildAllocator("caller-" + caller, 0, Long.MAX_VALUE);
                      VectorSchemaRoot in = input(mine, f)) {
                    do {
                      call.call(mine, in);
                      rows.addAndGet(ROWS);
                    } while (System.nanoTime() < end);
                    finished[caller] = System.nanoTime();
                  }
                  return null;
                }));
      }
      for (Future<?> c : callers) {
        c.get();
      }
    }
    long last = start;
    for (long t : finished) {
      last = Math.max(last, t);
    }
    batches[0] = rows.get() / ROWS;
    return rows.get() / ((last - start) / 1e9);
  }

  static VectorSchemaRoot input(BufferAllocator allocator, Function f) {
    List<FieldVector> columns = new ArrayList<>();
    if (f == Function.ADD_BIGINT) {
      BigIntVector a = new BigIntVector("arg1", allocator);
      BigIntVector b = new BigIntVector("arg2", allocator);
      a.allocateNew(ROWS);
      b.allocateNew(ROWS);
      for (int i = 0; i < ROWS; i++) {
        a.set(i, i);
        b.set(i, 1_000_000L * i);
      }
      columns.add(a);
      columns.add(b);
    } else {
      // Databend sends strings as Utf8View.
      ViewVarCharVector a = new ViewVarCharVector("arg1", allocator);
      ViewVarCharVector b = new ViewVarCharVector("arg2", allocator);
      a.allocateNew(ROWS);
      b.allocateNew(ROWS);
      for (int i = 0; i < ROWS; i++) {
        a.setSafe(i, ("left-" + i).getBytes(StandardCharsets.UTF_8));
        b.setSafe(i, ("right-" + i).getBytes(StandardCharsets.UTF_8));
      }
      columns.add(a);
      columns.add(b);
    }
    columns.forEach(c -> c.setValueCount(ROWS));
    VectorSchemaRoot root = new VectorSchemaRoot(columns);
    root.setRowCount(ROWS);
    return root;
  }

  /** Adds, to each N-runner row, its speed-up over the 1-runner row of the same function. */
  static void addScaling(ArrayNode rows) {
    for (var n : rows) {
      ObjectNode row = (ObjectNode) n;
      for (var m : rows) {
        if (m.get("function").equals(row.get("function")) && m.get("runners").asInt() == 1) {
          row.put(
              "speedup_over_one_runner",
              row.get("rows_per_second").asDouble() / m.get("rows_per_second").asDouble());
        }
      }
    }
  }

  /** The measurements as a Markdown table; {@code client}: the rows have a client JVM's CPU. */
  static void printTable(ArrayNode rows, boolean client) {
    System.out.println();
    System.out.println(
        "| function | runners | rows/s | plain Python loop, rows/s (median / best) |"
            + " per runner vs loop | speed-up vs 1 runner | sandbox rows per CPU-second vs loop |"
            + (client
                ? " CPU ms per batch: worker / sandbox / client |"
                : " CPU ms per batch: worker / sandbox |"));
    System.out.println("|---|---|---|---|---|---|---|---|");
    for (var n : rows) {
      System.out.printf(
          "| `%s` | %d | %,d | %,d / %,d | %.0f%% | %.2f× | %,d (%.0f%%) | %.1f / %.1f%s |%n",
          n.get("function").asText(),
          n.get("runners").asInt(),
          n.get("rows_per_second").asLong(),
          n.get("plain_loop_rows_per_second").asLong(),
          n.get("plain_loop_best_rows_per_second").asLong(),
          100 * n.get("ratio_per_runner").asDouble(),
          n.get("speedup_over_one_runner").asDouble(),
          n.get("sandbox_rows_per_cpu_second").asLong(),
          100 * n.get("ratio_per_sandbox_core").asDouble(),
          n.get("cpu_ms_per_batch_worker_jvm").asDouble(),
          n.get("cpu_ms_per_batch_sandbox").asDouble(),
          client ? String.format(" / %.1f", n.get("cpu_ms_per_batch_client_jvm").asDouble()) : "");
    }
    System.out.println();
  }

  static String spec(String handler, List<String> inputTypes, String resultType, String code) {
    ObjectNode n = JSON.createObjectNode();
    n.put("version", 1);
    n.put("kind", "udf");
    n.put("language", "python");
    n.put("handler", handler);
    ArrayNode in = n.putArray("input_types");
    inputTypes.forEach(in::add);
    n.put("result_type", resultType);
    n.putArray("imports");
    n.putArray("packages");
    n.put("runtime_version", "3.12.2");
    n.put("code", code);
    return n.toString();
  }

  static void deleteTree(Path dir) throws java.io.IOException {
    try (var paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  static void check(Function f, FieldVector result, int i) {
    boolean right =
        f == Function.ADD_BIGINT
            ? ((BigIntVector) result).get(i) == 1_000_001L * i
            : new String(((LargeVarCharVector) result).get(i), StandardCharsets.UTF_8)
                .equals("left-" + i + "right-" + i);
    if (!right) {
      throw new IllegalStateException("wrong result at row " + i + " of " + f.title());
    }
  }
}
