package dev.kiln.benchmarks;

import static dev.kiln.benchmarks.ThroughputBenchmark.*;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.definition.DataType;
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
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;

/**
 * The end-to-end half of {@link ThroughputBenchmark}: a real Kiln server and Databend's calls from
 * a client JVM ({@code --client} mode), against the plain-loop peer applied as a UDF.
 */
final class FlightThroughput {
  private FlightThroughput() {}

  /**
   * The end-to-end measurement: a real Kiln server, Databend's calls from a client JVM. Fills the
   * report's top-level fields and {@code results}; returns the rows.
   */
  static ArrayNode flight(Duration measure, int inFlightPerRunner, ObjectNode report)
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
            ColdStartBenchmark.localServer(data)
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
   * Rows/s of the plain Python loop inside a sandbox of the same image: the median of 21 runs, or
   * with {@code best} the best of them.
   */
  static double plainLoop(
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
  record Load(double rowsPerSecond, double workerCpuMs, double sandboxCpuMs, double clientCpuMs) {}

  /**
   * Runs the load in its own JVM (as Databend would be another process), so that this JVM's CPU is
   * the worker's; the sandboxes' CPU is that of the runsc processes under this JVM.
   */
  static Load load(
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

  /**
   * The load generator: {@code --client ENDPOINT FUNCTION IN_FLIGHT WARMUP_MS MEASURE_MS
   * HEADER=VALUE...}. Prints "measuring" when the warm-up is over, then "result BATCHES ROWS/S
   * CPU_NANOS".
   */
  static void client(String[] args) throws Exception {
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

  static double run(
      BufferAllocator allocator,
      DatabendClient.Resource r,
      Function f,
      int inFlight,
      Duration duration)
      throws Exception {
    return run(allocator, r, f, inFlight, duration, new long[1]);
  }

  /** Keeps {@code inFlight} calls going for {@code duration}; returns rows/s of completed calls. */
  static double run(
      BufferAllocator allocator,
      DatabendClient.Resource r,
      Function f,
      int inFlight,
      Duration duration,
      long[] batches)
      throws Exception {
    return keepCalling(
        allocator, f, inFlight, duration, batches, (mine, in) -> callOnce(mine, r, f, in));
  }

  /**
   * One batch on a new connection and a new DoExchange, as Databend makes it; checks a sample of
   * the rows. Flight's client spins in putNext until its stream is ready, which on few cores
   * starves the server; so the connection is made first and readiness is polled politely.
   */
  static void callOnce(
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

  static void awaitConnected(ManagedChannel channel) throws InterruptedException {
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
