package dev.kiln.benchmarks;

import static dev.kiln.benchmarks.ThroughputBenchmark.*;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.KilnServer;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * The {@code fast-client} mode of {@link ThroughputBenchmark}: what a Databend user gets, measured
 * with a native client as Databend's is. A pyarrow Flight client ({@code fast_client.py} in {@link
 * BenchVenv}) makes Databend's calls to a real Kiln server in this JVM: 65,536-row batches, N in
 * flight, each a DoExchange on a new connection, strings as Utf8View, every result row checked.
 *
 * <p>The client is another process, so this JVM's CPU is the worker's (the harness only waits for
 * the client's lines); the sandboxes' CPU is that of the runsc processes of this server's data
 * directory and their descendants; the client reports its own. Each figure is the median over the
 * repetitions. The peer is the plain Python loop of the other modes, in a sandbox of the same
 * image, in the same run.
 *
 * <p>A latency line comes with it: sequential one-row {@code add} calls, each on a new connection,
 * to the Kiln server and to a pyarrow Flight server in a plain Python process ({@code
 * floor_server.py}, no sandbox, no worker): the protocol's floor on this machine.
 *
 * <p>Run: {@code bin/bench throughput --mode fast-client [seconds per repetition, default 10]
 * [--in-flight 256,64,8] [--reps 5] [--sandbox-cpus 2] [--latency-calls 300]}. Writes {@code
 * fast_client} in {@code benchmarks/target/results/throughput.json}.
 */
final class FastClientThroughput {
  private FastClientThroughput() {}

  /** The mode's settings. */
  record Settings(
      Duration measure, List<Integer> inFlight, int reps, double sandboxCpus, int latencyCalls) {
    static Settings parse(List<String> args) {
      Duration measure = Duration.ofSeconds(10);
      List<Integer> inFlight = List.of(256, 64, 8);
      int reps = 5;
      double cpus = 2;
      int calls = 300;
      for (int i = 0; i < args.size(); i++) {
        String a = args.get(i);
        switch (a) {
          case "--in-flight" ->
              inFlight = Arrays.stream(args.get(++i).split(",")).map(Integer::valueOf).toList();
          case "--reps" -> reps = Integer.parseInt(args.get(++i));
          case "--sandbox-cpus" -> cpus = Double.parseDouble(args.get(++i));
          case "--latency-calls" -> calls = Integer.parseInt(args.get(++i));
          default -> measure = Duration.ofSeconds(Long.parseLong(a));
        }
      }
      return new Settings(measure, inFlight, reps, cpus, calls);
    }
  }

  /** Runs the mode; fills {@code fast_client} in the report and prints the tables. */
  static void run(Settings s, ObjectNode report) throws Exception {
    BenchVenv venv = BenchVenv.ready();
    String client = venv.script("fast_client.py");
    Path data = Files.createTempDirectory("kiln-bench-fast-client-");
    dataDir = data;
    ObjectNode out = report.putObject("fast_client");
    out.put("machine_cpus", Runtime.getRuntime().availableProcessors());
    out.put("sandbox_cpus", s.sandboxCpus());
    out.put("batch_rows", ROWS);
    out.put("measure_seconds", s.measure().toSeconds());
    out.put("repetitions", s.reps());
    out.put(
        "client",
        "pyarrow "
            + venv.version()
            + " Flight client (CPython, one thread per call in flight), a new FlightClient and"
            + " connection per DoExchange, Utf8View strings, every result row checked");
    ArrayNode rows = out.putArray("results");
    KilnConfig config = ColdStartBenchmark.localServer(data).sandboxCpus(s.sandboxCpus()).build();
    try (BufferAllocator allocator = new RootAllocator();
        KilnServer server = KilnServer.start(config);
        DatabendClient api = new DatabendClient("127.0.0.1:" + server.grpcPort())) {
      out.put("runners_per_sandbox", config.effectiveRunnersPerSandbox());
      double[] loops = new double[Function.values().length];
      double[] loopsBest = new double[loops.length];
      List<DatabendClient.Resource> udfs = new ArrayList<>();
      // Every plain loop before any UDF under test exists: a UDF's sandbox starting, or the warm
      // pool refilling after it, ran alongside the next function's loop and slowed it (concat's
      // median fell to a sixth of its best).
      for (Function f : Function.values()) {
        // Started first with time to build its image: plainLoop asks with Databend's 5 s deadline.
        api.apply(TENANT, loopSpec(f), List.of(), Duration.ofSeconds(120));
        // The first call's loop is not counted: it ran while the new sandbox was still settling.
        FlightThroughput.plainLoop(api, allocator, f, false);
        loops[f.ordinal()] = FlightThroughput.plainLoop(api, allocator, f, false);
        loopsBest[f.ordinal()] = FlightThroughput.plainLoop(api, allocator, f, true);
      }
      for (Function f : Function.values()) {
        udfs.add(api.apply(TENANT, udfSpec(f), List.of(), Duration.ofSeconds(120)));
      }
      for (Function f : Function.values()) {
        DatabendClient.Resource r = udfs.get(f.ordinal());
        for (int n : s.inFlight()) {
          double load = loadAverage();
          double[][] reps = measure(venv, client, r, f, n, s);
          ObjectNode row = rows.addObject();
          row.put("function", f.title());
          row.put("in_flight", n);
          // The machine may be shared: its load before the measurement says how much.
          row.put("load_average_1m_before", load);
          double rate = median(reps[0]);
          row.put("rows_per_second", Math.round(rate));
          ArrayNode each = row.putArray("rows_per_second_each");
          Arrays.stream(reps[0]).forEach(v -> each.add(Math.round(v)));
          row.put("plain_loop_rows_per_second", Math.round(loops[f.ordinal()]));
          row.put("plain_loop_best_rows_per_second", Math.round(loopsBest[f.ordinal()]));
          row.put("ratio_to_plain_loop", rate / loops[f.ordinal()]);
          row.put("cpu_ms_per_batch_worker_jvm", median(reps[1]));
          // Of it, the JIT compiler's: the server still warming up, which a long-running one is
          // not.
          row.put("cpu_ms_per_batch_worker_jit_compiler", median(reps[4]));
          row.put("cpu_ms_per_batch_sandbox", median(reps[2]));
          row.put("cpu_ms_per_batch_client", median(reps[3]));
          System.out.printf(
              "%-24s %3d in flight: %,12.0f rows/s (runs %s)   plain loop %,12.0f rows/s"
                  + "   CPU ms/batch: worker %.1f (JIT compiler %.1f), sandbox %.1f, client %.1f"
                  + "   load before %.1f%n",
              f.title(),
              n,
              rate,
              each,
              loops[f.ordinal()],
              median(reps[1]),
              median(reps[4]),
              median(reps[2]),
              median(reps[3]),
              load);
        }
      }
      ObjectNode latency = out.putObject("latency");
      latency.put("calls", s.latencyCalls());
      latency.put(
          "what",
          "sequential add(BIGINT NULL, BIGINT NULL) calls of 1 row, each a DoExchange on a new"
              + " connection from the same pyarrow client");
      DatabendClient.Resource add = udfs.get(Function.ADD_BIGINT.ordinal());
      latency.set("kiln", latency(venv, client, add.endpoint(), add.headers(), s.latencyCalls()));
      latency.set("pyarrow_server", floorLatency(venv, client, s.latencyCalls()));
      latency.set("kiln_pool_refills", refillLatency(venv, client, server, add, s.latencyCalls()));
    } finally {
      deleteTree(data);
    }
    print(out);
  }

  /**
   * One client process for {@code n} in flight: a warm-up, then {@code s.reps()} measurements.
   * Returns per repetition: rows/s, and CPU ms per batch of the worker, the sandboxes, the client
   * and the worker's JIT compiler threads.
   */
  static double[][] measure(
      BenchVenv venv, String script, DatabendClient.Resource r, Function f, int n, Settings s)
      throws Exception {
    List<String> command = new ArrayList<>(List.of(venv.python(), script, "throughput"));
    command.addAll(List.of(r.endpoint(), f.handler, Integer.toString(n)));
    r.headers().forEach((k, v) -> command.add(k + "=" + v));
    double[][] reps = new double[5][s.reps()];
    try (Client client = new Client(command)) {
      client.await("ready");
      warmUp(client);
      awaitQuiet();
      for (int i = 0; i < s.reps(); i++) {
        long worker = workerCpuNanos();
        long jit = jitCpuNanos();
        long sandbox = sandboxCpuNanos();
        client.send("go " + s.measure().toSeconds());
        String[] result = client.await("result ").split(" ");
        long workerUsed = workerCpuNanos() - worker;
        long jitUsed = jitCpuNanos() - jit;
        long sandboxUsed = sandboxCpuNanos() - sandbox;
        long batches = Long.parseLong(result[1]);
        reps[0][i] = Double.parseDouble(result[2]);
        reps[1][i] = workerUsed / 1e6 / batches;
        reps[2][i] = sandboxUsed / 1e6 / batches;
        reps[3][i] = Double.parseDouble(result[3]) * 1000 / batches;
        reps[4][i] = jitUsed / 1e6 / batches;
      }
    }
    return reps;
  }

  /** Warm-up rounds of {@link #WARM_UP_ROUND} at most; a round's load is the measurement's. */
  static final int WARM_UP_ROUNDS = 10;

  static final Duration WARM_UP_ROUND = Duration.ofSeconds(3);

  /**
   * The warm-up before a phase's measurements: rounds of the same load until the worker's JIT
   * compiler took less than 2% of the worker's CPU in a round (a long-running server has compiled
   * its code paths; a new one at 256 calls in flight was still compiling after 30 s and its first
   * repetitions ran a fifth slower), at most {@link #WARM_UP_ROUNDS}. Prints how many it took.
   */
  static void warmUp(Client client) throws Exception {
    int rounds = 0;
    double jitShare;
    do {
      long worker = workerCpuNanos();
      long jit = jitCpuNanos();
      client.send("go " + WARM_UP_ROUND.toSeconds());
      client.await("result ");
      jitShare = (double) (jitCpuNanos() - jit) / Math.max(1, workerCpuNanos() - worker);
      rounds++;
    } while (jitShare >= 0.02 && rounds < WARM_UP_ROUNDS);
    System.out.printf(
        "  warm-up: %d round(s) of %d s; in the last the JIT compiler took %.1f%% of the worker's"
            + " CPU%n",
        rounds, WARM_UP_ROUND.toSeconds(), 100 * jitShare);
  }

  static ObjectNode latency(
      BenchVenv venv, String script, String endpoint, java.util.Map<String, String> headers, int n)
      throws Exception {
    try (Client client = new Client(latencyCommand(venv, script, endpoint, headers, n))) {
      String[] line = client.await("latency ").split(" ");
      ObjectNode node = JSON.createObjectNode();
      node.put("p50_ms", Double.parseDouble(line[1]));
      node.put("p99_ms", Double.parseDouble(line[2]));
      node.put("mean_ms", Double.parseDouble(line[3]));
      return node;
    }
  }

  /**
   * What warm-pool refills cost hot calls: the same latency calls in pairs of blocks, the second of
   * each pair while refills are due all the time (each time the pool is full, its oldest sandbox is
   * recycled; no UDF takes any), the first as the quiet peer. Pairs alternate so that the machine's
   * drift falls on both alike. Four short pairs (refills wait for the calls to pause), then one
   * long pair of about 14 s of unbroken calls (a refill waits 10 s at most, then goes ahead at the
   * least CPU priority).
   */
  static ObjectNode refillLatency(
      BenchVenv venv, String script, KilnServer server, DatabendClient.Resource r, int n)
      throws Exception {
    AtomicInteger recycled = new AtomicInteger();
    List<List<Double>> quiet = new ArrayList<>(List.of(new ArrayList<>(), new ArrayList<>()));
    List<List<Double>> refilling = new ArrayList<>(List.of(new ArrayList<>(), new ArrayList<>()));
    long[] refillsDuring = new long[2];
    for (int b = 0; b < 4; b++) {
      refillsDuring[0] +=
          pair(
              venv,
              script,
              server,
              r,
              Math.max(20, n / 4),
              quiet.get(0),
              refilling.get(0),
              recycled);
    }
    int longBlock = (int) Math.ceil(14_000 / ColdStartBenchmark.percentile(quiet.get(0), 50));
    refillsDuring[1] +=
        pair(venv, script, server, r, longBlock, quiet.get(1), refilling.get(1), recycled);
    ObjectNode node = JSON.createObjectNode();
    node.put("sandboxes_recycled", recycled.get());
    node.put("refills_deferred", Math.round(counter(server, "kiln.warm.pool.refills.deferred")));
    for (int i = 0; i < 2; i++) {
      ObjectNode o = node.putObject(i == 0 ? "short_blocks" : "long_block");
      o.put("calls_each", quiet.get(i).size());
      o.put("refills_done_during_the_calls", refillsDuring[i]);
      o.put("quiet_p50_ms", ColdStartBenchmark.percentile(quiet.get(i), 50));
      o.put("quiet_p99_ms", ColdStartBenchmark.percentile(quiet.get(i), 99));
      o.put("quiet_max_ms", ColdStartBenchmark.percentile(quiet.get(i), 100));
      o.put("refilling_p50_ms", ColdStartBenchmark.percentile(refilling.get(i), 50));
      o.put("refilling_p99_ms", ColdStartBenchmark.percentile(refilling.get(i), 99));
      o.put("refilling_max_ms", ColdStartBenchmark.percentile(refilling.get(i), 100));
    }
    return node;
  }

  /**
   * One quiet block of {@code calls} latency calls, then one while refills are due; returns the
   * refills done during the second.
   */
  private static long pair(
      BenchVenv venv,
      String script,
      KilnServer server,
      DatabendClient.Resource r,
      int calls,
      List<Double> quiet,
      List<Double> refilling,
      AtomicInteger recycled)
      throws Exception {
    ColdStartBenchmark.await(
        server,
        "the warm pool fills",
        () ->
            ColdStartBenchmark.gauge(server, "kiln.warm.pool.ready") >= server.config().warmPool());
    quiet.addAll(latencyTimes(venv, script, r, calls));
    AtomicBoolean on = new AtomicBoolean(true);
    // From the client's first measured call on (after its 20 warm-up calls): a refill that
    // started before the calls did is not one that calls could hold back.
    double started = batches(server) + 20;
    Thread recycler =
        Thread.ofPlatform()
            .name("bench-recycler")
            .start(
                () -> {
                  while (on.get() && batches(server) < started) {
                    LockSupport.parkNanos(Duration.ofMillis(1).toNanos());
                  }
                  while (on.get()) {
                    if (server.recycleWarmSandbox()) {
                      recycled.incrementAndGet();
                    }
                    LockSupport.parkNanos(Duration.ofMillis(20).toNanos());
                  }
                });
    double refills = counter(server, "kiln.warm.pool.refills");
    try {
      refilling.addAll(latencyTimes(venv, script, r, calls));
    } finally {
      on.set(false);
      recycler.join();
    }
    return Math.round(counter(server, "kiln.warm.pool.refills") - refills);
  }

  /** Batches the server's Flight endpoint has answered, all UDFs together. */
  private static double batches(KilnServer server) {
    return server.meters().find("kiln.worker.batches").counters().stream()
        .mapToDouble(c -> c.count())
        .sum();
  }

  private static double counter(KilnServer server, String name) {
    return server.meters().get(name).functionCounter().count();
  }

  /** {@code n} latency calls after a warm-up; each call's ms. */
  private static List<Double> latencyTimes(
      BenchVenv venv, String script, DatabendClient.Resource r, int n) throws Exception {
    try (Client client = new Client(latencyCommand(venv, script, r.endpoint(), r.headers(), n))) {
      String line = client.await("times ");
      return Arrays.stream(line.substring("times ".length()).trim().split(" "))
          .map(Double::parseDouble)
          .toList();
    }
  }

  /** fast_client.py's latency mode: {@code n} calls to {@code endpoint} with {@code headers}. */
  private static List<String> latencyCommand(
      BenchVenv venv,
      String script,
      String endpoint,
      java.util.Map<String, String> headers,
      int n) {
    List<String> command = new ArrayList<>(List.of(venv.python(), script, "latency", endpoint));
    command.add(Integer.toString(n));
    headers.forEach((k, v) -> command.add(k + "=" + v));
    return command;
  }

  /** The same latency calls to a pyarrow Flight server computing add in a plain Python process. */
  static ObjectNode floorLatency(BenchVenv venv, String client, int n) throws Exception {
    try (Client server = new Client(List.of(venv.python(), venv.script("floor_server.py")))) {
      String port = server.await("");
      return latency(venv, client, "grpc://127.0.0.1:" + port.strip(), java.util.Map.of(), n);
    }
  }

  /** The host's 1-minute load average, or -1 where {@code /proc/loadavg} cannot be read. */
  static double loadAverage() {
    try {
      return Double.parseDouble(Files.readString(Path.of("/proc/loadavg")).split(" ")[0]);
    } catch (IOException | RuntimeException e) {
      return -1;
    }
  }

  static double median(double[] values) {
    double[] v = values.clone();
    Arrays.sort(v);
    int m = v.length / 2;
    return v.length % 2 == 1 ? v[m] : (v[m - 1] + v[m]) / 2;
  }

  static void print(ObjectNode out) {
    System.out.println();
    System.out.printf(
        "End to end with a native client: pyarrow Flight, a new connection per DoExchange,"
            + " sandbox-cpus %s, %d runners per sandbox; medians of %d runs of %d s%n%n",
        out.get("sandbox_cpus").asText(),
        out.get("runners_per_sandbox").asInt(),
        out.get("repetitions").asInt(),
        out.get("measure_seconds").asInt());
    System.out.println(
        "| function | in flight | rows/s end to end | plain loop, one core, same run |"
            + " worker JVM CPU per batch (of it JIT compiling) | sandbox CPU per batch |"
            + " client CPU per batch |");
    System.out.println("|---|---|---|---|---|---|---|");
    for (var n : out.get("results")) {
      System.out.printf(
          "| `%s` | %d | %,d (%.0f%%) | %,d | %.1f ms (%.1f) | %.1f ms | %.1f ms |%n",
          n.get("function").asText(),
          n.get("in_flight").asInt(),
          n.get("rows_per_second").asLong(),
          100 * n.get("ratio_to_plain_loop").asDouble(),
          n.get("plain_loop_rows_per_second").asLong(),
          n.get("cpu_ms_per_batch_worker_jvm").asDouble(),
          n.get("cpu_ms_per_batch_worker_jit_compiler").asDouble(),
          n.get("cpu_ms_per_batch_sandbox").asDouble(),
          n.get("cpu_ms_per_batch_client").asDouble());
    }
    var l = out.get("latency");
    System.out.println();
    System.out.printf(
        "Latency, %d sequential 1-row add calls, each on a new connection (pyarrow client):%n",
        l.get("calls").asInt());
    var refills = l.get("kiln_pool_refills");
    for (String block : List.of("short_blocks", "long_block")) {
      var b = refills.get(block);
      System.out.printf(
          "  Kiln, %s (%d calls each way), while refills are due all the time: p50 %.2f ms, p99 %.2f ms,"
              + " max %.1f ms; quiet blocks between: p50 %.2f ms, p99 %.2f ms, max %.1f ms (%d"
              + " refills done during the calls)%n",
          block.equals("short_blocks") ? "4 pairs of blocks" : "1 long pair of blocks",
          b.get("calls_each").asInt(),
          b.get("refilling_p50_ms").asDouble(),
          b.get("refilling_p99_ms").asDouble(),
          b.get("refilling_max_ms").asDouble(),
          b.get("quiet_p50_ms").asDouble(),
          b.get("quiet_p99_ms").asDouble(),
          b.get("quiet_max_ms").asDouble(),
          b.get("refills_done_during_the_calls").asInt());
    }
    System.out.printf(
        "    (%d warm sandboxes recycled; %d refills waited for the calls to pause, 10 s at"
            + " most)%n",
        refills.get("sandboxes_recycled").asInt(), refills.get("refills_deferred").asInt());
    for (String k : List.of("kiln", "pyarrow_server")) {
      System.out.printf(
          "  %-58s p50 %.2f ms, p99 %.2f ms, mean %.2f ms%n",
          k.equals("kiln")
              ? "Kiln (worker + gVisor sandbox):"
              : "pyarrow Flight server in a plain Python process (floor):",
          l.get(k).get("p50_ms").asDouble(),
          l.get(k).get("p99_ms").asDouble(),
          l.get(k).get("mean_ms").asDouble());
    }
    System.out.println();
  }

  /** A Python process spoken to by lines: commands on its stdin, answers on its stdout. */
  static final class Client implements AutoCloseable {
    private final List<String> command;
    private final Process process;
    private final BufferedReader out;
    private final Writer in;
    private final StringBuilder seen = new StringBuilder();

    Client(List<String> command) throws IOException {
      this.command = command;
      process = new ProcessBuilder(command).redirectErrorStream(true).start();
      out =
          new BufferedReader(
              new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
      in = new java.io.OutputStreamWriter(process.getOutputStream(), StandardCharsets.UTF_8);
    }

    void send(String line) throws IOException {
      in.write(line + "\n");
      in.flush();
    }

    /** The next line that starts with {@code prefix}; fails with all output when there is none. */
    String await(String prefix) throws IOException {
      String line;
      while ((line = out.readLine()) != null) {
        seen.append(line).append('\n');
        if (line.startsWith(prefix)) {
          return line;
        }
      }
      throw new IllegalStateException(
          "the Python process ended (" + String.join(" ", command) + "):\n" + seen);
    }

    @Override
    public void close() throws Exception {
      try {
        in.close();
      } catch (IOException e) {
        // it has ended already
      }
      if (!process.waitFor(30, TimeUnit.SECONDS)) {
        process.destroy();
        if (!process.waitFor(30, TimeUnit.SECONDS)) {
          process.destroyForcibly();
        }
      }
    }
  }
}
