package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.controlplane.proto.resource.CreateWorkerRequest;
import dev.kiln.definition.DataType;
import dev.kiln.definition.QueryScripts;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * The egress proxy as a UDF meets it: the same Python ({@code urllib}, a new connection per GET)
 * inside a gVisor sandbox whose only route is Kiln's egress proxy, and on the host straight to the
 * server, in alternating rounds. The sandbox's figure holds gVisor's network path (ptrace here) and
 * the proxy; the host's is the floor.
 */
final class SandboxEgress {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** Times {@code n} fetches of {@code url}, a new connection each; milliseconds as JSON. */
  static final String FETCHES =
      """
      import json
      import ssl
      import time
      import urllib.request

      def fetches(url: str, n: int) -> str:
          ctx = ssl._create_unverified_context()
          out = []
          for _ in range(n):
              t = time.perf_counter()
              size = 0
              with urllib.request.urlopen(url, context=ctx, timeout=120) as r:
                  while True:
                      b = r.read(1 << 20)
                      if not b:
                          break
                      size += len(b)
              out.append([(time.perf_counter() - t) * 1000, size])
          return json.dumps(out)
      """;

  private SandboxEgress() {}

  /** Measures against the HTTPS server on {@code port} of this machine, named api.bench.test. */
  static void measure(int port, int gets, int downloads) throws Exception {
    Path data = Files.createTempDirectory("kiln-bench-egress-udf-");
    Path hosts =
        Files.writeString(
            data.resolveSibling(data.getFileName() + ".hosts"), "127.0.0.1 api.bench.test\n");
    KilnConfig config =
        ColdStartBenchmark.localServer(data)
            .set("egress-hosts", hosts.toString())
            .set("egress-deny", "169.254.0.0/16")
            .set("warm-pool", "0")
            .set("batch-timeout", "600s")
            .build();
    try (KilnServer server = KilnServer.start(config);
        DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort());
        BufferAllocator allocator = new RootAllocator()) {
      client
          .workers("bench", Duration.ofSeconds(5))
          .createWorker(
              CreateWorkerRequest.newBuilder()
                  .setTenantId("bench")
                  .setName("fetches")
                  .putOptions("egress", "api.bench.test")
                  .build());
      DatabendClient.Resource r =
          client.createWorker(
              "bench",
              "fetches",
              QueryScripts.udf(FETCHES, "fetches")
                  .inputs("STRING NULL", "INT NULL")
                  .result("STRING NULL")
                  .render(),
              Duration.ofSeconds(5));
      String named = "https://api.bench.test:" + port;
      String direct = "https://127.0.0.1:" + port;
      udf(allocator, r, named + "/small", 3); // the runner's first import and connection
      host(direct + "/small", 3);
      List<Double> smallUdf = new ArrayList<>();
      List<Double> smallHost = new ArrayList<>();
      int rounds = 4;
      for (int i = 0; i < rounds; i++) {
        smallUdf.addAll(ms(udf(allocator, r, named + "/small", gets / rounds)));
        smallHost.addAll(ms(host(direct + "/small", gets / rounds)));
      }
      List<Double> bigUdf = new ArrayList<>();
      List<Double> bigHost = new ArrayList<>();
      for (int i = 0; i < downloads; i++) {
        bigUdf.addAll(mibPerSecond(udf(allocator, r, named + "/big", 1)));
        bigHost.addAll(mibPerSecond(host(direct + "/big", 1)));
      }
      System.out.printf(
          "from a UDF (urllib in a gVisor sandbox, through the proxy) against the same Python on"
              + " the host (straight), %d small GETs each way, a new connection each:%n"
              + "  host          p50 %.2f ms  p90 %.2f ms%n"
              + "  UDF, proxied  p50 %.2f ms  p90 %.2f ms  (+%.2f ms at p50)%n",
          smallUdf.size(),
          EgressBenchmark.pct(smallHost, 50),
          EgressBenchmark.pct(smallHost, 90),
          EgressBenchmark.pct(smallUdf, 50),
          EgressBenchmark.pct(smallUdf, 90),
          EgressBenchmark.pct(smallUdf, 50) - EgressBenchmark.pct(smallHost, 50));
      System.out.printf(
          "100 MiB HTTPS download (%d each way): host %s MiB/s, UDF through the proxy %s MiB/s;"
              + " median %.0f against %.0f MiB/s%n",
          downloads,
          EgressBenchmark.fmt(bigHost),
          EgressBenchmark.fmt(bigUdf),
          EgressBenchmark.pct(bigHost, 50),
          EgressBenchmark.pct(bigUdf, 50));
    } finally {
      ColdStartBenchmark.deleteTree(data);
      Files.deleteIfExists(hosts);
    }
  }

  private static JsonNode udf(
      BufferAllocator allocator, DatabendClient.Resource r, String url, int n) throws Exception {
    var rows =
        DatabendClient.call(
            allocator,
            r.endpoint(),
            r.headers(),
            "bench",
            "fetches",
            List.of(DataType.parse("STRING NULL"), DataType.parse("INT NULL")),
            JSON.valueToTree(List.of(List.of(url, n))),
            Duration.ofMinutes(10));
    String out = rows.get(0).get(0).asText();
    if (!out.startsWith("[")) {
      throw new IllegalStateException("the UDF's fetches failed: " + out);
    }
    return JSON.readTree(out);
  }

  /** The same function, run by the host's python3 without a proxy. */
  private static JsonNode host(String url, int n) throws Exception {
    String program =
        FETCHES + "\nprint(fetches(" + JSON.writeValueAsString(url) + ", " + n + "))\n";
    ProcessBuilder pb = new ProcessBuilder("python3", "-c", program).redirectErrorStream(true);
    for (String v : List.of("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")) {
      pb.environment().remove(v);
    }
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
      throw new IllegalStateException("python3 on the host failed: " + out);
    }
    return JSON.readTree(out);
  }

  private static List<Double> ms(JsonNode fetches) {
    List<Double> out = new ArrayList<>();
    fetches.forEach(f -> out.add(f.get(0).asDouble()));
    return out;
  }

  private static List<Double> mibPerSecond(JsonNode fetches) {
    List<Double> out = new ArrayList<>();
    fetches.forEach(f -> out.add(f.get(1).asDouble() / (1 << 20) / (f.get(0).asDouble() / 1000)));
    return out;
  }
}
