package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.controlplane.SandboxRunners;
import dev.kiln.definition.DataType;
import dev.kiln.definition.RuntimeSpec;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.image.BuildImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.Runtimes;
import dev.kiln.image.WheelLayers;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.RunscProvisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.Lock;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerLauncher;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.StartRunners;
import dev.kiln.worker.UdfSignature;
import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import java.lang.management.ManagementFactory;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.IntVector;
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
 * <p>Run: {@code bin/bench throughput [--mode pool|flight|both] [seconds per measurement, default
 * 15] [calls in flight per runner, default 2]}. Writes {@code
 * benchmarks/target/results/throughput.json}: the end-to-end figures at the top level ({@code
 * results}), the worker-level ones under {@code worker_pool}; a mode not run keeps what an earlier
 * run wrote.
 */
public final class ThroughputBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String TENANT = "bench";
  static final int ROWS = 65_536;

  private static final String LOOP =
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

  private static final String ADD =
      "def add(a, b):\n    return a + b\n\n"
          + "def rows():\n    xs = list(range(%d))\n    return xs, [1000000 * x for x in xs]\n";

  private static final String CONCAT =
      "def concat(a, b):\n    return a + b\n\n"
          + "def rows():\n    xs = list(range(%d))\n"
          + "    return ['left-%%d' %% x for x in xs], ['right-%%d' %% x for x in xs]\n";

  /** A function under test: its code, the plain-loop UDF over the same rows, and its inputs. */
  private enum Function {
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
      client(args);
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
    if (!List.of("pool", "flight", "both").contains(mode)) {
      System.err.println(
          "usage: ThroughputBenchmark [--mode pool|flight|both] [seconds per measurement]"
              + " [calls in flight per runner]");
      System.exit(2);
    }
    Duration measure =
        Duration.ofSeconds(positional.size() > 0 ? Long.parseLong(positional.get(0)) : 15);
    int inFlightPerRunner = positional.size() > 1 ? Integer.parseInt(positional.get(1)) : 2;

    // Whatever an earlier run wrote for the mode not run now stays in the file.
    Path out = Path.of("benchmarks/target/results/throughput.json");
    ObjectNode report = JSON.createObjectNode();
    if (Files.isRegularFile(out)) {
      try {
        if (JSON.readTree(out.toFile()) instanceof ObjectNode old) {
          report = old;
        }
      } catch (java.io.IOException e) {
        System.err.println("ignoring unreadable " + out + ": " + e.getMessage());
      }
    }
    ArrayNode poolRows = null;
    ArrayNode flightRows = null;
    if (!mode.equals("flight")) {
      poolRows = pool(measure, inFlightPerRunner, report);
    }
    if (!mode.equals("pool")) {
      flightRows = flight(measure, inFlightPerRunner, report);
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
    Files.createDirectories(out.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
    System.out.println("wrote " + out.toAbsolutePath());
  }

  /**
   * The end-to-end measurement: a real Kiln server, Databend's calls from a client JVM. Fills the
   * report's top-level fields and {@code results}; returns the rows.
   */
  private static ArrayNode flight(Duration measure, int inFlightPerRunner, ObjectNode report)
      throws Exception {
    int cores = Runtime.getRuntime().availableProcessors();
    Path data = Files.createTempDirectory("kiln-bench-throughput-");
    dataDir = data;

    report.put("machine_cpus", cores);
    report.put("batch_rows", ROWS);
    report.put("measure_seconds", measure.toSeconds());
    report.put("in_flight_per_runner", inFlightPerRunner);
    report.put(
        "peer",
        "the same function over the same rows in a plain Python loop in one process, no I/O,"
            + " run inside a sandbox of the same image (same python3, same gVisor)");
    ArrayNode rows = report.putArray("results");
    List<Integer> runnerCounts = cores > 1 ? List.of(1, cores) : List.of(1);
    try (BufferAllocator allocator = new RootAllocator()) {
      for (int runners : runnerCounts) {
        KilnConfig kiln =
            KilnConfig.builder()
                .grpcPort(0)
                .flightPort(0)
                .adminPort(0)
                .bindHost("127.0.0.1")
                .dataDir(data)
                .sandboxCpus(cores)
                .runnersPerSandbox(runners)
                .build();
        try (KilnServer server = KilnServer.start(kiln);
            DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort())) {
          // Every sandbox up and the server idle (no image builds, no layer extraction) first.
          double[] loops = new double[Function.values().length];
          double[] loopsBest = new double[loops.length];
          List<DatabendClient.Resource> udfs = new ArrayList<>();
          for (Function f : Function.values()) {
            loops[f.ordinal()] = plainLoop(client, allocator, f, false);
            loopsBest[f.ordinal()] = plainLoop(client, allocator, f, true);
            DatabendClient.Resource r =
                client.apply(
                    TENANT,
                    spec(
                        f.handler,
                        List.of(f.type + " NULL", f.type + " NULL"),
                        f.type + " NULL",
                        f.code));
            try (BufferAllocator warm = allocator.newChildAllocator("warm", 0, Long.MAX_VALUE);
                VectorSchemaRoot in = input(warm, f)) {
              callOnce(warm, r, f, in);
            }
            udfs.add(r);
          }
          awaitQuiet();
          for (Function f : Function.values()) {
            double loop = loops[f.ordinal()];
            double loopBest = loopsBest[f.ordinal()];
            DatabendClient.Resource r = udfs.get(f.ordinal());
            int inFlight = inFlightPerRunner * runners;
            Load load = load(r, f, inFlight, Duration.ofSeconds(10), measure);
            double rate = load.rowsPerSecond();
            ObjectNode n = rows.addObject();
            n.put("function", f.title());
            n.put("runners", runners);
            n.put("sandbox_cpus", cores);
            n.put("in_flight", inFlight);
            n.put("rows_per_second", Math.round(rate));
            n.put("plain_loop_rows_per_second", Math.round(loop));
            n.put("plain_loop_best_rows_per_second", Math.round(loopBest));
            n.put("ratio_to_plain_loop", rate / loop);
            n.put("ratio_per_runner", rate / loop / runners);
            // A runner's rate when it has a core to itself: rows per CPU second of the sandbox.
            double perCore = ROWS / (load.sandboxCpuMs() / 1000.0);
            n.put("sandbox_rows_per_cpu_second", Math.round(perCore));
            n.put("ratio_per_sandbox_core", perCore / loop);
            n.put("cpu_ms_per_batch_worker_jvm", load.workerCpuMs());
            n.put("cpu_ms_per_batch_sandbox", load.sandboxCpuMs());
            n.put("cpu_ms_per_batch_client_jvm", load.clientCpuMs());
            System.out.printf(
                "%-24s %d runner(s): %,12.0f rows/s   plain loop %,12.0f rows/s   %5.1f%%"
                    + "   CPU ms/batch: worker %.1f, sandbox %.1f, client %.1f%n",
                f.title(),
                runners,
                rate,
                loop,
                100 * rate / loop,
                load.workerCpuMs(),
                load.sandboxCpuMs(),
                load.clientCpuMs());
          }
        }
      }
    } finally {
      deleteTree(data);
    }
    addScaling(rows);
    return rows;
  }

  /**
   * The worker-level measurement: the worker's {@link RunnerPool}, as the control plane starts it
   * (runners in a gVisor sandbox of the UDF's image: the default base image, the runner layer and
   * the code layer; the same sandbox limits, per-runner memory and timeouts), called directly from
   * this JVM with pre-built 65,536-row batches (strings as Utf8View), {@code inFlightPerRunner}
   * calls per runner in flight. No Flight, no client JVM: this JVM's CPU is the worker's (encoding
   * batches for the runners, decoding their results), the sandbox's is the runners'. The peer is
   * the same plain-loop UDF as {@code flight}'s, run by a runner in the same sandbox just before
   * the pool starts. Writes the report's {@code worker_pool}; returns its rows.
   */
  private static ArrayNode pool(Duration measure, int inFlightPerRunner, ObjectNode report)
      throws Exception {
    int cores = Runtime.getRuntime().availableProcessors();
    Path data = Files.createTempDirectory("kiln-bench-pool-");
    dataDir = data;
    ObjectNode section = report.putObject("worker_pool");
    section.put(
        "what",
        "dev.kiln.worker.RunnerPool with its runners in a gVisor sandbox of the UDF's image, called"
            + " in the benchmark JVM with pre-built batches (Utf8View strings); no Flight, no"
            + " client JVM");
    section.put("machine_cpus", cores);
    section.put("batch_rows", ROWS);
    section.put("measure_seconds", measure.toSeconds());
    section.put("in_flight_per_runner", inFlightPerRunner);
    section.put(
        "peer",
        "the same function over the same rows in a plain Python loop in one process, no I/O,"
            + " run as a UDF in a runner of the same sandbox (same python3, same gVisor) before the"
            + " pool starts");
    ArrayNode rows = section.putArray("results");
    List<Integer> runnerCounts = cores > 1 ? List.of(1, cores) : List.of(1);
    KilnConfig defaults = KilnConfig.builder().sandboxCpus(cores).build();
    try (Runtimes runtimes =
            Runtimes.open(Map.of(), defaults.baseImage(), "", data.resolve("images"));
        ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor();
        RunscProvisioner provisioner =
            RunscProvisioner.builder()
                .runsc(defaults.runsc())
                .platform(defaults.runscPlatform())
                .workDir(data.resolve("provisioner"))
                .build();
        BufferAllocator allocator = new RootAllocator()) {
      BuildImage images =
          new BuildImage(
              new WheelLayers(data.resolve("wheel-layers")),
              SandboxRunners.runnerLayer(),
              executor);
      List<BuiltImage> built = new ArrayList<>();
      for (Function f : Function.values()) {
        built.add(udfImage(images, runtimes.all().get(0), f));
      }
      for (int runners : runnerCounts) {
        KilnConfig config = defaults.toBuilder().runnersPerSandbox(runners).build();
        for (Function f : Function.values()) {
          SandboxSpec spec =
              new SandboxSpec(
                  "bench-" + f.handler,
                  SandboxRunners.sandboxImage(built.get(f.ordinal())),
                  new Limits(config.sandboxMemoryBytes(), config.sandboxCpus()),
                  List.of());
          try (Sandbox sandbox = provisioner.start(spec);
              RunnerPool loopPeer = plainLoopPeer(sandbox, f, config)) {
            // The peer runs before and after the load (each the median of 21 loops), and the two
            // are averaged: the machine's speed drifts over a measurement, on a shared VM a lot.
            double[] before = plainLoop(loopPeer, allocator);
            RunnerLauncher launcher = SandboxRunners.launcher(sandbox);
            int n = config.effectiveRunnersPerSandbox();
            try (RunnerPool pool =
                new StartRunners(config.batchTimeout())
                    .start(
                        UdfSignature.of(RuntimeSpec.parse(udfSpec(f))),
                        launcher,
                        n,
                        config.sandboxMemoryBytes())) {
              int inFlight = inFlightPerRunner * n;
              callPool(pool, allocator, f, 1, Duration.ZERO, new long[1]);
              awaitQuiet();
              PoolLoad load =
                  poolLoad(pool, allocator, f, inFlight, Duration.ofSeconds(10), measure);
              double rate = load.rowsPerSecond();
              double[] after = plainLoop(loopPeer, allocator);
              double[] loop = {(before[0] + after[0]) / 2, Math.max(before[1], after[1])};
              ObjectNode r = rows.addObject();
              r.put("function", f.title());
              r.put("runners", n);
              r.put("sandbox_cpus", cores);
              r.put("in_flight", inFlight);
              r.put("rows_per_second", Math.round(rate));
              r.put("plain_loop_rows_per_second", Math.round(loop[0]));
              r.put("plain_loop_best_rows_per_second", Math.round(loop[1]));
              r.put("plain_loop_before_rows_per_second", Math.round(before[0]));
              r.put("plain_loop_after_rows_per_second", Math.round(after[0]));
              r.put("ratio_to_plain_loop", rate / loop[0]);
              r.put("ratio_per_runner", rate / loop[0] / n);
              double perCore = ROWS / (load.sandboxCpuMs() / 1000.0);
              r.put("sandbox_rows_per_cpu_second", Math.round(perCore));
              r.put("ratio_per_sandbox_core", perCore / loop[0]);
              r.put("cpu_ms_per_batch_worker_jvm", load.workerCpuMs());
              r.put("cpu_ms_per_batch_sandbox", load.sandboxCpuMs());
              System.out.printf(
                  "pool: %-24s %d runner(s): %,12.0f rows/s   plain loop %,12.0f rows/s"
                      + " (before %,.0f, after %,.0f)   %5.1f%%"
                      + "   CPU ms/batch: worker %.1f, sandbox %.1f%n",
                  f.title(),
                  n,
                  rate,
                  loop[0],
                  before[0],
                  after[0],
                  100 * rate / loop[0],
                  load.workerCpuMs(),
                  load.sandboxCpuMs());
            }
          }
        }
      }
    } finally {
      deleteTree(data);
    }
    addScaling(rows);
    return rows;
  }

  /** Where the UDF images of the {@code pool} mode hold the plain-loop UDF. */
  private static final String LOOP_DIR = "/kiln/bench-loop";

  /**
   * The plain-loop UDF: {@code f}'s code and a loop over its rows, as {@code flight} applies it.
   */
  private static String loopSpec(Function f) {
    return spec(
        f.handler + "_loop",
        List.of("INT NULL"),
        "DOUBLE NULL",
        f.code + LOOP.formatted(f.handler));
  }

  /** The UDF's spec, as Databend sends it for the function. */
  private static String udfSpec(Function f) {
    return spec(f.handler, List.of(f.type + " NULL", f.type + " NULL"), f.type + " NULL", f.code);
  }

  /**
   * The UDF's image, built with the image builder's own recipe for a UDF without packages or
   * imports, with the plain-loop peer's files under {@link #LOOP_DIR} added to the code layer.
   */
  private static BuiltImage udfImage(BuildImage images, Runtimes.Runtime runtime, Function f)
      throws Exception {
    UdfDefinition definition = UdfDefinition.fromSpec(udfSpec(f), List.of());
    // The plain-loop peer, loaded by a runner started with KILN_UDF_DIR pointing here.
    Map<String, byte[]> codeFiles = new TreeMap<>(RunnerFiles.udfFiles(definition.spec()));
    RunnerFiles.udfFiles(RuntimeSpec.parse(loopSpec(f)))
        .forEach(
            (path, bytes) ->
                codeFiles.put(LOOP_DIR + path.substring(RunnerFiles.UDF_DIR.length()), bytes));
    return images
        .build(
            new BuildImage.Recipe(
                runtime,
                null,
                definition.key(runtime.digest(), RunnerFiles.version()),
                definition.handler(),
                codeFiles,
                Lock.empty(),
                List.of(),
                List.of()))
        .image();
  }

  /**
   * The plain loop as a UDF in a runner of this sandbox, as {@code flight} measures it: the median
   * and the best of 21 runs, in rows/s. The runner loads the loop UDF from its own directory of the
   * image; it ends before the pool under test starts.
   */
  /** One runner in {@code sandbox} serving the plain-loop UDF of {@code f}. */
  private static RunnerPool plainLoopPeer(Sandbox sandbox, Function f, KilnConfig config)
      throws Exception {
    RunnerLauncher launcher =
        env -> {
          List<String> withLoop = new ArrayList<>(env);
          withLoop.add("KILN_UDF_DIR=" + LOOP_DIR);
          return SandboxRunners.runner(sandbox.exec(RunnerFiles.serveCommand(), withLoop));
        };
    return new StartRunners(config.batchTimeout())
        .start(
            UdfSignature.of(RuntimeSpec.parse(loopSpec(f))),
            launcher,
            1,
            config.sandboxMemoryBytes());
  }

  /** The plain loop's rows/s: the median and the best of 21 runs. */
  private static double[] plainLoop(RunnerPool loop, BufferAllocator allocator) throws Exception {
    try (BufferAllocator mine = allocator.newChildAllocator("loop", 0, Long.MAX_VALUE)) {
      return new double[] {loopCall(loop, mine, 21), loopCall(loop, mine, -21)};
    }
  }

  private static double loopCall(RunnerPool loop, BufferAllocator allocator, int reps)
      throws Exception {
    try (IntVector in = new IntVector("arg1", allocator)) {
      in.allocateNew(1);
      in.set(0, reps);
      in.setValueCount(1);
      try (FieldVector out = loop.call(List.of(in), 1, allocator)) {
        return ((Float8Vector) out).get(0);
      }
    }
  }

  /** What one worker-level measurement saw: rows/s, and CPU per batch of the worker and sandbox. */
  private record PoolLoad(double rowsPerSecond, double workerCpuMs, double sandboxCpuMs) {}

  private static PoolLoad poolLoad(
      RunnerPool pool,
      BufferAllocator allocator,
      Function f,
      int inFlight,
      Duration warmup,
      Duration measure)
      throws Exception {
    callPool(pool, allocator, f, inFlight, warmup, new long[1]);
    long sandboxBefore = sandboxCpuNanos();
    long workerBefore = workerCpuNanos();
    long[] batches = new long[1];
    double rate = callPool(pool, allocator, f, inFlight, measure, batches);
    long workerAfter = workerCpuNanos();
    long sandboxAfter = sandboxCpuNanos();
    return new PoolLoad(
        rate,
        (workerAfter - workerBefore) / 1e6 / batches[0],
        (sandboxAfter - sandboxBefore) / 1e6 / batches[0]);
  }

  /**
   * Keeps {@code inFlight} calls of the pool going for {@code duration} (at least one call each),
   * each thread with its own pre-built input; checks a sample of every result. Returns rows/s of
   * completed calls.
   */
  private static double callPool(
      RunnerPool pool,
      BufferAllocator allocator,
      Function f,
      int inFlight,
      Duration duration,
      long[] batches)
      throws Exception {
    AtomicLong rows = new AtomicLong();
    long start = System.nanoTime();
    long end = start + duration.toNanos();
    long[] finished = new long[inFlight];
    try (ExecutorService threads = Executors.newFixedThreadPool(inFlight)) {
      List<Future<?>> workers = new ArrayList<>();
      for (int w = 0; w < inFlight; w++) {
        int worker = w;
        workers.add(
            threads.submit(
                () -> {
                  try (BufferAllocator mine =
                          allocator.newChildAllocator("caller-" + worker, 0, Long.MAX_VALUE);
                      VectorSchemaRoot in = input(mine, f)) {
                    List<FieldVector> columns = in.getFieldVectors();
                    do {
                      try (FieldVector out = pool.call(columns, ROWS, mine)) {
                        if (out.getValueCount() != ROWS) {
                          throw new IllegalStateException(
                              "result has " + out.getValueCount() + " rows");
                        }
                        for (int i = 0; i < ROWS; i += 4099) {
                          check(f, out, i);
                        }
                      }
                      rows.addAndGet(ROWS);
                    } while (System.nanoTime() < end);
                    finished[worker] = System.nanoTime();
                  }
                  return null;
                }));
      }
      for (Future<?> w : workers) {
        w.get();
      }
    }
    long last = start;
    for (long t : finished) {
      last = Math.max(last, t);
    }
    batches[0] = rows.get() / ROWS;
    return rows.get() / ((last - start) / 1e9);
  }

  /**
   * Rows/s of the plain Python loop inside a sandbox of the same image: the median of 21 runs, or
   * with {@code best} the best of them.
   */
  private static double plainLoop(
      DatabendClient client, BufferAllocator allocator, Function f, boolean best) throws Exception {
    String handler = f.handler + "_loop";
    DatabendClient.Resource r =
        client.apply(
            TENANT,
            spec(handler, List.of("INT NULL"), "DOUBLE NULL", f.code + LOOP.formatted(f.handler)));
    ArrayNode out =
        DatabendClient.call(
            allocator,
            r.endpoint(),
            r.headers(),
            TENANT,
            handler,
            List.of(DataType.parse("INT NULL")),
            DatabendClient.json(best ? "[[-21]]" : "[[21]]"),
            Duration.ofSeconds(300));
    return out.get(0).get(0).asDouble();
  }

  /** What one measurement saw: rows/s, and CPU per batch of each process involved. */
  private record Load(
      double rowsPerSecond, double workerCpuMs, double sandboxCpuMs, double clientCpuMs) {}

  /**
   * Runs the load in its own JVM (as Databend would be another process), so that this JVM's CPU is
   * the worker's; the sandboxes' CPU is that of the runsc processes under this JVM.
   */
  private static Load load(
      DatabendClient.Resource r, Function f, int inFlight, Duration warmup, Duration measure)
      throws Exception {
    List<String> command = new ArrayList<>();
    command.add(ProcessHandle.current().info().command().orElse("java"));
    command.addAll(
        ManagementFactory.getRuntimeMXBean().getInputArguments().stream()
            .filter(
                a ->
                    a.startsWith("--add-opens")
                        || a.startsWith("-Dio.netty")
                        || a.startsWith("--sun-misc"))
            .toList());
    command.addAll(
        List.of(
            "-cp",
            System.getProperty("java.class.path"),
            ThroughputBenchmark.class.getName(),
            "--client",
            r.endpoint(),
            f.name(),
            Integer.toString(inFlight),
            Long.toString(warmup.toMillis()),
            Long.toString(measure.toMillis())));
    r.headers().forEach((k, v) -> command.add(k + "=" + v));
    Process client = new ProcessBuilder(command).redirectErrorStream(true).start();
    StringBuilder output = new StringBuilder();
    long[] before = null;
    long batches = 0;
    double rate = 0;
    try (var lines =
        new java.io.BufferedReader(
            new java.io.InputStreamReader(client.getInputStream(), StandardCharsets.UTF_8))) {
      String line;
      while ((line = lines.readLine()) != null) {
        output.append(line).append('\n');
        if (line.equals("measuring")) {
          before = new long[] {workerCpuNanos(), sandboxCpuNanos()};
        } else if (line.startsWith("result ")) {
          String[] parts = line.split(" ");
          batches = Long.parseLong(parts[1]);
          rate = Double.parseDouble(parts[2]);
          long[] after = {workerCpuNanos(), sandboxCpuNanos()};
          double clientCpu = Double.parseDouble(parts[3]);
          if (!client.waitFor(60, TimeUnit.SECONDS) || client.exitValue() != 0 || before == null) {
            break;
          }
          return new Load(
              rate,
              (after[0] - before[0]) / 1e6 / batches,
              (after[1] - before[1]) / 1e6 / batches,
              clientCpu / 1e6 / batches);
        }
      }
    }
    client.waitFor(60, TimeUnit.SECONDS);
    throw new IllegalStateException("the load generator failed:\n" + output);
  }

  /** Waits (up to a minute) until this JVM uses under a tenth of a core: background work done. */
  private static void awaitQuiet() throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
    while (System.nanoTime() < deadline) {
      long cpu = workerCpuNanos();
      Thread.sleep(1000);
      if (workerCpuNanos() - cpu < 100_000_000L) {
        return;
      }
    }
  }

  private static long workerCpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  /**
   * CPU of the sandboxes: every process whose command line names the data directory (runsc and
   * gVisor's sandbox processes) and their descendants (gVisor's ptrace stubs, which run the Python
   * code).
   */
  private static long sandboxCpuNanos() {
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

  private static Path dataDir = Path.of("/nonexistent");

  /**
   * The load generator: {@code --client ENDPOINT FUNCTION IN_FLIGHT WARMUP_MS MEASURE_MS
   * HEADER=VALUE...}. Prints "measuring" when the warm-up is over, then "result BATCHES ROWS/S
   * CPU_NANOS".
   */
  private static void client(String[] args) throws Exception {
    String endpoint = args[1];
    Function f = Function.valueOf(args[2]);
    int inFlight = Integer.parseInt(args[3]);
    Duration warmup = Duration.ofMillis(Long.parseLong(args[4]));
    Duration measure = Duration.ofMillis(Long.parseLong(args[5]));
    java.util.Map<String, String> headers = new java.util.TreeMap<>();
    for (int i = 6; i < args.length; i++) {
      int eq = args[i].indexOf('=');
      headers.put(args[i].substring(0, eq), args[i].substring(eq + 1));
    }
    DatabendClient.Resource r = new DatabendClient.Resource(endpoint, headers, "");
    try (BufferAllocator allocator = new RootAllocator()) {
      run(allocator, r, f, inFlight, warmup);
      System.out.println("measuring");
      System.out.flush();
      long cpu = workerCpuNanos();
      long[] batches = new long[1];
      double rate = run(allocator, r, f, inFlight, measure, batches);
      System.out.println("result " + batches[0] + " " + rate + " " + (workerCpuNanos() - cpu));
    }
  }

  private static double run(
      BufferAllocator allocator,
      DatabendClient.Resource r,
      Function f,
      int inFlight,
      Duration duration)
      throws Exception {
    return run(allocator, r, f, inFlight, duration, new long[1]);
  }

  /** Keeps {@code inFlight} calls going for {@code duration}; returns rows/s of completed calls. */
  private static double run(
      BufferAllocator allocator,
      DatabendClient.Resource r,
      Function f,
      int inFlight,
      Duration duration,
      long[] batches)
      throws Exception {
    AtomicLong rows = new AtomicLong();
    long start = System.nanoTime();
    long end = start + duration.toNanos();
    long[] finished = new long[inFlight];
    try (ExecutorService threads = Executors.newFixedThreadPool(inFlight)) {
      List<Future<?>> workers = new ArrayList<>();
      for (int w = 0; w < inFlight; w++) {
        int worker = w;
        workers.add(
            threads.submit(
                () -> {
                  try (BufferAllocator mine =
                          allocator.newChildAllocator("worker-" + worker, 0, Long.MAX_VALUE);
                      VectorSchemaRoot in = input(mine, f)) {
                    while (System.nanoTime() < end) {
                      callOnce(mine, r, f, in);
                      rows.addAndGet(ROWS);
                    }
                    finished[worker] = System.nanoTime();
                  }
                  return null;
                }));
      }
      for (Future<?> w : workers) {
        w.get();
      }
    }
    // Calls still running at the deadline finish after it; count the time until the last one.
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

  /**
   * One batch on a new connection and a new DoExchange, as Databend makes it; checks a sample of
   * the rows. Flight's client spins in putNext until its stream is ready, which on few cores
   * starves the server; so the connection is made first and readiness is polled politely.
   */
  private static void callOnce(
      BufferAllocator allocator, DatabendClient.Resource r, Function f, VectorSchemaRoot in)
      throws Exception {
    URI uri = URI.create(r.endpoint());
    ManagedChannel channel =
        NettyChannelBuilder.forAddress(uri.getHost(), uri.getPort())
            .usePlaintext()
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .build();
    try {
      awaitConnected(channel);
      FlightCallHeaders h = new FlightCallHeaders();
      h.insert("x-databend-tenant", TENANT);
      h.insert("x-databend-function", f.handler);
      h.insert("x-databend-query-id", "bench");
      r.headers().forEach(h::insert);
      try (FlightClient client = FlightGrpcUtils.createFlightClient(allocator, channel);
          FlightClient.ExchangeReaderWriter x =
              client.doExchange(
                  FlightDescriptor.path(f.handler),
                  new HeaderCallOption(h),
                  CallOptions.timeout(300, TimeUnit.SECONDS))) {
        x.getWriter().start(in);
        x.getWriter().setUseZeroCopy(true); // the input is never changed while being sent
        while (!x.getWriter().isReady()) {
          LockSupport.parkNanos(100_000);
        }
        x.getWriter().putNext();
        x.getWriter().completed();
        if (!x.getReader().next()) {
          throw new IllegalStateException("no result batch");
        }
        VectorSchemaRoot out = x.getReader().getRoot();
        if (out.getRowCount() != ROWS) {
          throw new IllegalStateException("result has " + out.getRowCount() + " rows");
        }
        for (int i = 0; i < ROWS; i += 4099) {
          check(f, out.getVector(0), i);
        }
        if (x.getReader().next()) {
          throw new IllegalStateException("more result batches than input batches");
        }
      }
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  private static void check(Function f, FieldVector result, int i) {
    boolean right =
        f == Function.ADD_BIGINT
            ? ((BigIntVector) result).get(i) == 1_000_001L * i
            : new String(((LargeVarCharVector) result).get(i), StandardCharsets.UTF_8)
                .equals("left-" + i + "right-" + i);
    if (!right) {
      throw new IllegalStateException("wrong result at row " + i + " of " + f.title());
    }
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

  /** Adds, to each N-runner row, its speed-up over the 1-runner row of the same function. */
  private static void addScaling(ArrayNode rows) {
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
  private static void printTable(ArrayNode rows, boolean client) {
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

  private static void deleteTree(Path dir) throws java.io.IOException {
    try (var paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
