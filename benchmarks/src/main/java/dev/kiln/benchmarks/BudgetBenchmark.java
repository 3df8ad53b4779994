package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.KilnServer;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * Host memory while many distinct UDFs are created one after another on a node with a sandbox
 * budget: each UDF is applied and called once, as a new function's first query; every {@code step}
 * UDFs the benchmark records the sandboxes running, the budget in use, the memory the sandboxes'
 * processes hold (PSS of every runsc process of this data directory) and the host's {@code
 * MemAvailable}. With the budget the memory must stay flat once the budget is full; the peer in the
 * same run is the host's memory before the first UDF and at the moment the budget first fills.
 *
 * <p>Run: {@code bin/bench budget [UDFS] [MAX_SANDBOXES]} (default 200 and 40). Writes {@code
 * benchmarks/target/results/budget.json}.
 */
public final class BudgetBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();

  private BudgetBenchmark() {}

  public static void main(String[] args) throws Exception {
    int udfs = args.length > 0 ? Integer.parseInt(args[0]) : 200;
    int maxSandboxes = args.length > 1 ? Integer.parseInt(args[1]) : 40;
    int step = Math.max(1, udfs / 20);
    Path data = Files.createTempDirectory("kiln-bench-budget-");
    KilnConfig config =
        ColdStartBenchmark.localServer(data)
            .set("max-sandboxes", Integer.toString(maxSandboxes))
            .set("sandbox-memory", "256MiB")
            // As measured for the README before the warm pool: every sandbox a UDF's own.
            .set("warm-pool", "0")
            .build();
    ArrayNode samples = JSON.createArrayNode();
    long availableBefore = memAvailable();
    long t0 = System.nanoTime();
    try (KilnServer server = KilnServer.start(config);
        DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort());
        BufferAllocator allocator = new RootAllocator()) {
      System.out.printf(
          "%6s %9s %12s %14s %14s %8s%n",
          "udfs", "running", "budget MiB", "runsc PSS MiB", "host avail MiB", "elapsed");
      for (int i = 1; i <= udfs; i++) {
        String handler = "plus_" + i;
        ColdStartBenchmark.callPlus(
            allocator, client.apply("bench", ColdStartBenchmark.plus(handler, i)), handler, i);
        if (i % step == 0 || i == 1) {
          ObjectNode s = samples.addObject();
          s.put("udfs", i);
          s.put("running", gauge(server, "kiln.sandboxes.running"));
          s.put("budget_mib", gauge(server, "kiln.budget.memory.bytes") / (1 << 20));
          s.put("runsc_pss_mib", runscPss(data) >> 20);
          s.put("host_available_mib", memAvailable() >> 20);
          s.put("elapsed_s", (System.nanoTime() - t0) / 1e9);
          System.out.printf(
              "%6d %9.0f %12.0f %14d %14d %7.0fs%n",
              i,
              s.get("running").asDouble(),
              s.get("budget_mib").asDouble(),
              s.get("runsc_pss_mib").asLong(),
              s.get("host_available_mib").asLong(),
              s.get("elapsed_s").asDouble());
        }
      }
      ObjectNode report = JSON.createObjectNode();
      report.put("udfs", udfs);
      report.put("max_sandboxes", maxSandboxes);
      report.put("host_available_before_mib", availableBefore >> 20);
      report.put(
          "budget_stops",
          server.meters().find("kiln.sandbox.stops").tag("reason", "budget").counter() == null
              ? 0
              : server
                  .meters()
                  .get("kiln.sandbox.stops")
                  .tag("reason", "budget")
                  .counter()
                  .count());
      report.set("samples", samples);
      System.out.printf(
          "host MemAvailable before the first UDF: %d MiB; sandboxes stopped for the budget: %.0f%n",
          availableBefore >> 20, report.get("budget_stops").asDouble());
      Path out = Path.of("benchmarks/target/results/budget.json");
      Files.createDirectories(out.getParent());
      JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
      System.out.println("wrote " + out.toAbsolutePath());
    } finally {
      deleteTree(data);
    }
  }

  private static double gauge(KilnServer server, String name) {
    return server.meters().get(name).gauge().value();
  }

  /** The host's {@code MemAvailable}, in bytes. */
  static long memAvailable() throws IOException {
    for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
      if (line.startsWith("MemAvailable:")) {
        return Long.parseLong(line.replaceAll("[^0-9]", "")) << 10;
      }
    }
    throw new IOException("no MemAvailable in /proc/meminfo");
  }

  /**
   * Proportional set size of every process whose command line names this data directory (runsc, its
   * gofer and sandbox) and of their children (the sandboxes' ptrace stubs), in bytes.
   */
  static long runscPss(Path data) throws IOException {
    String marker = data.toString();
    List<Long> roots = new ArrayList<>();
    ProcessHandle.allProcesses()
        .filter(p -> p.info().commandLine().map(c -> c.contains(marker)).orElse(false))
        .forEach(p -> roots.add(p.pid()));
    long total = 0;
    java.util.Set<Long> seen = new java.util.HashSet<>();
    for (long pid : roots) {
      total += pssTree(pid, seen);
    }
    return total;
  }

  private static long pssTree(long pid, java.util.Set<Long> seen) {
    if (!seen.add(pid)) {
      return 0;
    }
    long pss = 0;
    try {
      for (String line : Files.readAllLines(Path.of("/proc/" + pid + "/smaps_rollup"))) {
        if (line.startsWith("Pss:")) {
          pss = Long.parseLong(line.replaceAll("[^0-9]", "")) << 10;
        }
      }
    } catch (IOException | RuntimeException e) {
      return 0; // gone meanwhile
    }
    long[] sum = {pss};
    ProcessHandle.of(pid)
        .ifPresent(p -> p.children().forEach(c -> sum[0] += pssTree(c.pid(), seen)));
    return sum[0];
  }

  private static void deleteTree(Path dir) throws IOException {
    try (var paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
