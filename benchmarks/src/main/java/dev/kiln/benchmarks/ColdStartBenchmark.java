package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.KilnConfigBuilder;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.controlplane.ProvisioningTimings;
import dev.kiln.definition.DataType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * End-to-end cold start and hot path of a Kiln server on this machine, with gVisor's own start time
 * ({@code runsc do true}) measured in the same run as the peer.
 *
 * <ul>
 *   <li>cold: ApplyUdfResource for a never-seen spec until the first correct DoExchange result,
 *       split into image build, sandbox start and runner start (the first one also pays for cold
 *       Jib caches and extracting the base image);
 *   <li>hot: ApplyUdfResource on a known spec, sequentially, as Databend calls it on every query;
 *   <li>the same through CreateWorker, as today's Databend Query sends it ({@link
 *       CreateWorkerBench}): a UDF with one staged import, a new presigned URL on every call;
 *   <li>peer: {@code runsc --platform=ptrace --network=none do true}.
 *   <li>peer: what Databend's reference control plane does for a new UDF ({@link ReferencePeer}).
 * </ul>
 *
 * <p>Run: {@code bin/bench cold-start [runs] [hot-calls]}. Writes {@code
 * benchmarks/target/results/cold-start.json}.
 */
public final class ColdStartBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();

  private ColdStartBenchmark() {}

  public static void main(String[] args) throws Exception {
    int runs = args.length > 0 ? Integer.parseInt(args[0]) : 5;
    int hotCalls = args.length > 1 ? Integer.parseInt(args[1]) : 1000;
    Path data = Files.createTempDirectory("kiln-bench-");
    // The cold path (no warm sandbox) first; the warm pool's runs after, on their own server.
    KilnConfig config = localServer(data).set("warm-pool", "0").build();

    List<Double> runscDo = new ArrayList<>();
    for (int i = 0; i < 10; i++) {
      runscDo.add(runscDoTrue());
    }

    List<ObjectNode> cold = new ArrayList<>();
    List<Double> hotApply = new ArrayList<>();
    List<Double> hotCall = new ArrayList<>();
    List<Double> serverApply = new ArrayList<>();
    ObjectNode createWorker;
    try (KilnServer server = KilnServer.start(config);
        DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort());
        BufferAllocator allocator = new RootAllocator()) {
      for (int i = 0; i <= runs; i++) {
        long t0 = System.nanoTime();
        DatabendClient.Resource r = client.apply("bench", plus("add_" + i, i));
        long t1 = System.nanoTime();
        callPlus(allocator, r, "add_" + i, i);
        long t2 = System.nanoTime();
        ProvisioningTimings t = server.timings("bench", r.key()).orElseThrow();
        ObjectNode n = JSON.createObjectNode();
        n.put("run", i == 0 ? "first (cold caches)" : "new spec #" + i);
        n.put("total_ms", ms(t2 - t0));
        n.put("apply_rpc_ms", ms(t1 - t0));
        n.put("image_ms", t.imageMillis());
        n.put("sandbox_ms", t.sandboxMillis());
        n.put("runners_ms", t.runnersMillis());
        n.put("server_ready_ms", t.totalMillis());
        cold.add(n);
      }
      String known = plus("add_0", 0);
      for (int i = 0; i < hotCalls; i++) {
        long t0 = System.nanoTime();
        client.apply("bench", known);
        hotApply.add(ms(System.nanoTime() - t0));
      }
      var serverSide = server.meters().get("kiln.apply").timer().takeSnapshot();
      for (var v : serverSide.percentileValues()) {
        serverApply.add(v.value(TimeUnit.MILLISECONDS));
      }
      createWorker = CreateWorkerBench.run(server, client, allocator, hotCalls);
      DatabendClient.Resource r = client.apply("bench", known);
      for (int i = 0; i < 200; i++) {
        long t0 = System.nanoTime();
        callPlus(allocator, r, "add_0", 0);
        hotCall.add(ms(System.nanoTime() - t0));
      }
    }

    List<Double> resumes = new ArrayList<>();
    List<List<Double>> refillEffect = new ArrayList<>();
    List<Double> warm = poolHits(data, runs, resumes, refillEffect);
    Path mirror = Path.of(System.getProperty("kiln.bench.mirror", "/opt/pypi"));
    PackageColdStart.Result packages =
        Files.isDirectory(mirror.resolve("simple")) ? PackageColdStart.run(mirror, runs) : null;
    // Peer: what Databend's reference control plane does (buildah + pip, then runsc run).
    ObjectNode reference = ReferencePeer.run(mirror, runs);

    ObjectNode report = JSON.createObjectNode();
    report.put("machine_cpus", Runtime.getRuntime().availableProcessors());
    report.put("pool_hit_median_ms", percentile(warm, 50));
    report.put("resume_median_ms", percentile(resumes, 50));
    ArrayNode warmNode = report.putArray("pool_hits_ms");
    warm.forEach(warmNode::add);
    ArrayNode coldNode = report.putArray("cold");
    cold.forEach(coldNode::add);
    List<Double> coldTypical =
        cold.subList(1, cold.size()).stream().map(n -> n.get("total_ms").asDouble()).toList();
    List<Double> sandbox =
        cold.subList(1, cold.size()).stream().map(n -> n.get("sandbox_ms").asDouble()).toList();
    report.put("cold_new_spec_median_ms", percentile(coldTypical, 50));
    report.put("sandbox_start_median_ms", percentile(sandbox, 50));
    report.put("runsc_do_true_median_ms", percentile(runscDo, 50));
    report.put("hot_apply_p50_ms", percentile(hotApply, 50));
    report.put("hot_apply_p99_ms", percentile(hotApply, 99));
    report.put("hot_apply_max_ms", percentile(hotApply, 100));
    report.put("hot_apply_calls", hotApply.size());
    report.put("hot_apply_server_p50_ms", serverApply.get(0));
    report.put("hot_apply_server_p99_ms", serverApply.get(1));
    report.set("create_worker", createWorker);
    report.put("hot_doexchange_1row_p50_ms", percentile(hotCall, 50));
    report.put("hot_doexchange_1row_p99_ms", percentile(hotCall, 99));

    System.out.println();
    System.out.println("Cold start: ApplyUdfResource -> first correct DoExchange result");
    System.out.printf(
        "%-22s %9s %9s %9s %9s %9s%n", "run", "total", "apply", "image", "sandbox", "runners");
    for (ObjectNode n : cold) {
      System.out.printf(
          "%-22s %7.0fms %7.0fms %7.0fms %7.0fms %7.0fms%n",
          n.get("run").asText(),
          n.get("total_ms").asDouble(),
          n.get("apply_rpc_ms").asDouble(),
          n.get("image_ms").asDouble(),
          n.get("sandbox_ms").asDouble(),
          n.get("runners_ms").asDouble());
    }
    System.out.printf(
        "%nSandbox start (Kiln, median) %.0f ms vs runsc do true (peer, median of 10) %.0f ms%n",
        report.get("sandbox_start_median_ms").asDouble(),
        report.get("runsc_do_true_median_ms").asDouble());
    System.out.printf(
        "New UDF, request -> first correct result: warm pool hit median %.0f ms (%s) vs pool miss"
            + " (the cold path above) median %.0f ms vs runsc do true %.0f ms%n",
        report.get("pool_hit_median_ms").asDouble(),
        warm.stream().map(v -> "%.0f".formatted(v)).toList(),
        report.get("cold_new_spec_median_ms").asDouble(),
        report.get("runsc_do_true_median_ms").asDouble());
    System.out.printf(
        "Hot DoExchange (1 row, new connection) x200 on a warm-started UDF: pool full p50 %.2f ms,"
            + " p99 %.2f ms; while the pool refills all the time (%.0f sandboxes taken) p50 %.2f ms,"
            + " p99 %.2f ms%n",
        refillEffect.get(0).get(0),
        refillEffect.get(0).get(1),
        refillEffect.get(2).get(0),
        refillEffect.get(1).get(0),
        refillEffect.get(1).get(1));
    report.put("hot_pool_full_p50_ms", refillEffect.get(0).get(0));
    report.put("hot_pool_refilling_p50_ms", refillEffect.get(1).get(0));
    if (packages != null) {
      report.put("numpy_pandas_cold_median_ms", percentile(packages.cold(), 50));
      report.put("numpy_pandas_cached_wheels_median_ms", percentile(packages.cachedWheels(), 50));
      report.put("numpy_pandas_code_change_median_ms", percentile(packages.codeChange(), 50));
      System.out.printf(
          "numpy + pandas UDF, request -> first correct result (index: %s): nothing cached but the"
              + " base median %.0f ms %s; cached wheels, a new UDF median %.0f ms %s; code change"
              + " median %.0f ms %s%n",
          mirror,
          percentile(packages.cold(), 50),
          rounded(packages.cold()),
          percentile(packages.cachedWheels(), 50),
          rounded(packages.cachedWheels()),
          percentile(packages.codeChange(), 50),
          rounded(packages.codeChange()));
      report.put("numpy_pandas_zygote_miss_median_ms", percentile(packages.zygoteMiss(), 50));
      report.put("numpy_pandas_zygote_hit_median_ms", percentile(packages.zygoteHit(), 50));
      report.put(
          "numpy_pandas_zygote_code_change_median_ms", percentile(packages.zygoteCodeChange(), 50));
      System.out.printf(
          "numpy + pandas with --zygotes 1 after a restart: a new UDF before the zygote is ready"
              + " (cached wheels) median %.0f ms %s; a new UDF placed in the zygote median %.0f ms"
              + " %s; code change placed in the zygote median %.0f ms %s; a ready zygote holds"
              + " %s MiB%n",
          percentile(packages.zygoteMiss(), 50),
          rounded(packages.zygoteMiss()),
          percentile(packages.zygoteHit(), 50),
          rounded(packages.zygoteHit()),
          percentile(packages.zygoteCodeChange(), 50),
          rounded(packages.zygoteCodeChange()),
          rounded(packages.zygoteMiB()));
      report.put("numpy_pandas_zygote_memory_median_mib", percentile(packages.zygoteMiB(), 50));
    } else {
      System.out.println("numpy + pandas: skipped, no local PyPI mirror at " + mirror);
    }
    ReferencePeer.print(reference); // the peer's rows, next to Kiln's numbers above
    report.set("reference_peer", reference);
    System.out.printf(
        "Resume after idle suspend (DoExchange with the token held, a warm sandbox): median %.0f"
            + " ms (%s)%n",
        report.get("resume_median_ms").asDouble(),
        resumes.stream().map(v -> "%.0f".formatted(v)).toList());
    System.out.printf(
        "Hot ApplyUdfResource x%d: p50 %.3f ms, p99 %.3f ms, max %.3f ms%n",
        hotApply.size(),
        report.get("hot_apply_p50_ms").asDouble(),
        report.get("hot_apply_p99_ms").asDouble(),
        report.get("hot_apply_max_ms").asDouble());
    System.out.printf(
        "  of which inside the server (kiln.apply timer): p50 %.3f ms, p99 %.3f ms%n",
        serverApply.get(0), serverApply.get(1));
    CreateWorkerBench.print(createWorker);
    System.out.printf(
        "Hot DoExchange (1 row, new connection each) x%d: p50 %.2f ms, p99 %.2f ms%n",
        hotCall.size(),
        report.get("hot_doexchange_1row_p50_ms").asDouble(),
        report.get("hot_doexchange_1row_p99_ms").asDouble());
    Path out = Path.of("benchmarks/target/results/cold-start.json");
    Files.createDirectories(out.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
    System.out.println("wrote " + out.toAbsolutePath());
    deleteTree(data);
  }

  /**
   * New UDFs placed in a warm sandbox: a server with {@code --warm-pool 1}; before each run it
   * waits until the pool holds its sandbox again (as a server between new UDFs does), then times
   * ApplyUdfResource until the first correct result.
   */
  private static List<Double> poolHits(
      Path data, int runs, List<Double> resumes, List<List<Double>> refillEffect) throws Exception {
    List<Double> totals = new ArrayList<>();
    try (KilnServer server =
            KilnServer.start(
                localServer(data).set("warm-pool", "1").set("auto-suspend", "2s").build());
        DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort());
        BufferAllocator allocator = new RootAllocator()) {
      for (int i = 0; i < runs; i++) {
        await(server, "the warm pool fills", () -> gauge(server, "kiln.warm.pool.ready") >= 1);
        String handler = "warm_" + i;
        long t0 = System.nanoTime();
        DatabendClient.Resource r = client.apply("bench", plus(handler, 100 + i));
        long tApply = System.nanoTime();
        callPlus(allocator, r, handler, 100 + i);
        long t1 = System.nanoTime();
        ProvisioningTimings t = server.timings("bench", r.key()).orElseThrow();
        System.out.printf(
            "warm run %d: apply %.0f ms (server ready after %.0f ms), first call %.0f ms%n",
            i, ms(tApply - t0), t.totalMillis(), ms(t1 - tApply));
        totals.add(ms(t1 - t0));
      }
      double hits = server.meters().get("kiln.warm.pool.hits").functionCounter().count();
      if (hits != runs) {
        throw new IllegalStateException(runs + " warm runs but " + hits + " pool hits");
      }
      // Hot calls on a ready UDF while the pool is full, then while it refills all the time (a
      // thread takes each warm sandbox as soon as it is ready): refills must not slow them down.
      String hot = "warm_0";
      DatabendClient.Resource h = client.apply("bench", plus(hot, 100));
      hotCalls(allocator, h, hot, 100, 1); // started again if it was suspended
      await(server, "the warm pool fills", () -> gauge(server, "kiln.warm.pool.ready") >= 1);
      refillEffect.add(hotCalls(allocator, h, hot, 100, 200));
      java.util.concurrent.atomic.AtomicBoolean draining =
          new java.util.concurrent.atomic.AtomicBoolean(true);
      java.util.concurrent.atomic.AtomicInteger taken =
          new java.util.concurrent.atomic.AtomicInteger();
      Thread drainer =
          Thread.ofPlatform()
              .start(
                  () -> {
                    try (DatabendClient c = new DatabendClient("127.0.0.1:" + server.grpcPort())) {
                      while (draining.get()) {
                        if (gauge(server, "kiln.warm.pool.ready") >= 1) {
                          int n = taken.incrementAndGet();
                          c.apply("bench", plus("drain_" + n, 0));
                        }
                        java.util.concurrent.locks.LockSupport.parkNanos(
                            TimeUnit.MILLISECONDS.toNanos(5));
                      }
                    } catch (Exception e) {
                      throw new IllegalStateException(e);
                    }
                  });
      try {
        refillEffect.add(hotCalls(allocator, h, hot, 100, 200));
      } finally {
        draining.set(false);
        drainer.join();
      }
      refillEffect.add(List.of((double) taken.get()));

      // Resume: the last UDF stopped after 2 s without calls (--auto-suspend), then called again
      // with the token Databend holds, once the pool is full again.
      String handler = "warm_" + (runs - 1);
      DatabendClient.Resource r = client.apply("bench", plus(handler, 99 + runs));
      for (int i = 0; i < runs; i++) {
        await(
            server,
            "the UDF is suspended and the pool full",
            () ->
                gauge(server, "kiln.sandboxes.running") == gauge(server, "kiln.warm.pool.ready")
                    && gauge(server, "kiln.warm.pool.ready") >= 1);
        long t0 = System.nanoTime();
        callPlus(allocator, r, handler, 99 + runs);
        long t1 = System.nanoTime();
        resumes.add(ms(t1 - t0));
      }
    }
    return totals;
  }

  /** {@code n} sequential one-row calls, each on a new connection; p50 and p99 in ms. */
  private static List<Double> hotCalls(
      BufferAllocator allocator, DatabendClient.Resource r, String handler, long add, int n)
      throws Exception {
    List<Double> times = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      long t0 = System.nanoTime();
      callPlus(allocator, r, handler, add);
      times.add(ms(System.nanoTime() - t0));
    }
    return List.of(percentile(times, 50), percentile(times, 99));
  }

  /** {@code handler(x) = x + add} as Databend writes its spec. */
  static String plus(String handler, long add) {
    return spec(handler, "def " + handler + "(x):\n    return x + " + add + "\n");
  }

  /** Calls {@link #plus} {@code handler} with the row (1) and checks it answered 1 + add. */
  static void callPlus(
      BufferAllocator allocator, DatabendClient.Resource r, String handler, long add)
      throws Exception {
    ArrayNode result =
        DatabendClient.call(
            allocator,
            r.endpoint(),
            r.headers(),
            "bench",
            handler,
            List.of(DataType.parse("BIGINT NULL")),
            DatabendClient.json("[[1]]"),
            Duration.ofSeconds(180));
    if (result.get(0).get(0).asLong() != 1 + add) {
      throw new IllegalStateException("wrong result " + result + " from " + handler);
    }
  }

  static double gauge(KilnServer server, String name) {
    return server.meters().get(name).gauge().value();
  }

  static void await(KilnServer server, String what, BooleanSupplier condition) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException(what + ": not within 120 s");
      }
      java.util.concurrent.locks.LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
    }
  }

  /** A server on this machine's loopback, on free ports, with its data in {@code data}. */
  static KilnConfigBuilder localServer(Path data) {
    return KilnConfig.builder()
        .grpcPort(0)
        .flightPort(0)
        .adminPort(0)
        .bindHost("127.0.0.1")
        .dataDir(data);
  }

  static String spec(String handler, String code) {
    return spec(handler, code, List.of());
  }

  /** A spec as Databend writes it, with {@code packages}. */
  static String spec(String handler, String code, List<String> packages) {
    ObjectNode n = JSON.createObjectNode();
    n.put("version", 1);
    n.put("kind", "udf");
    n.put("language", "python");
    n.put("handler", handler);
    n.putArray("input_types").add("BIGINT NULL");
    n.put("result_type", "BIGINT NULL");
    n.putArray("imports");
    packages.forEach(n.putArray("packages")::add);
    n.put("runtime_version", "3.12.2");
    n.put("code", code);
    return n.toString();
  }

  private static double runscDoTrue() throws IOException, InterruptedException {
    long t0 = System.nanoTime();
    Process p =
        new ProcessBuilder("runsc", "--platform=ptrace", "--network=none", "do", "true")
            .redirectErrorStream(true)
            .start();
    p.getInputStream().readAllBytes();
    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IllegalStateException("runsc do true failed");
    }
    return ms(System.nanoTime() - t0);
  }

  private static List<String> rounded(List<Double> values) {
    return values.stream().map(v -> "%.0f".formatted(v)).toList();
  }

  static double ms(long nanos) {
    return nanos / 1e6;
  }

  /** Nearest-rank percentile (100 = max). */
  static double percentile(List<Double> values, double p) {
    List<Double> sorted = new ArrayList<>(values);
    sorted.sort(Comparator.naturalOrder());
    int rank = (int) Math.ceil(p / 100.0 * sorted.size());
    return sorted.get(Math.max(0, Math.min(sorted.size() - 1, rank - 1)));
  }

  static void deleteTree(Path dir) throws IOException {
    try (var paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
