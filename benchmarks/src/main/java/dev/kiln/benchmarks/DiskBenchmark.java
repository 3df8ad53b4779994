package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest;
import dev.kiln.definition.DataType;
import dev.kiln.definition.QueryScripts;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Comparator;
import java.util.List;
import java.util.Random;
import java.util.stream.Stream;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * Disk reclaimed by collection after a UDF is replaced many times, as {@code CREATE OR REPLACE
 * FUNCTION} does through CreateWorker: each version carries 256 KiB of its own data in its code, is
 * called once, and the worker is suspended and resumed (so only the last version runs). The files
 * are then aged past {@code --gc-after} (their times stand for the clock) and {@code kiln cache gc}
 * runs; the peer in the same run is the disk use before the first version. The last version is
 * called again afterwards, to show the running UDF was left whole.
 *
 * <p>Run: {@code bin/bench disk [VERSIONS]} (default 50). Writes {@code
 * benchmarks/target/results/disk.json}.
 */
public final class DiskBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();

  private DiskBenchmark() {}

  public static void main(String[] args) throws Exception {
    int versions = args.length > 0 ? Integer.parseInt(args[0]) : 50;
    Path data = Files.createTempDirectory("kiln-bench-disk-");
    KilnConfig config = ColdStartBenchmark.localServer(data).build();
    try (KilnServer server = KilnServer.start(config);
        DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort());
        BufferAllocator allocator = new RootAllocator()) {
      String admin = "http://127.0.0.1:" + server.adminPort();
      long before = diskBytes(admin);
      Random random = new Random(42);
      DatabendClient.Resource last = null;
      String lastScript = null;
      for (int v = 1; v <= versions; v++) {
        byte[] blob = new byte[192 << 10];
        random.nextBytes(blob);
        String code =
            "DATA = '"
                + Base64.getEncoder().encodeToString(blob)
                + "'\n\ndef f(x):\n    return x + "
                + v
                + "\n";
        lastScript =
            QueryScripts.udf(code, "f").inputs("BIGINT NULL").result("BIGINT NULL").render();
        last = client.createWorker("bench", "f", lastScript, Duration.ofSeconds(5));
        check(allocator, last, v);
      }
      // Only the last version runs from here on.
      client
          .workers("bench", Duration.ofSeconds(5))
          .alterWorker(
              AlterWorkerRequest.newBuilder()
                  .setTenantId("bench")
                  .setName("f")
                  .setStateAction(AlterWorkerRequest.WorkerStateAction.Suspend)
                  .build());
      last = client.createWorker("bench", "f", lastScript, Duration.ofSeconds(5));
      check(allocator, last, versions);
      long afterVersions = diskBytes(admin);
      JsonNode kindsBefore = JSON.readTree(get(admin + "/cache/stats")).path("disk");
      ageEverything(data);
      long t0 = System.nanoTime();
      JsonNode gc = JSON.readTree(post(admin + "/cache/gc"));
      double gcMs = (System.nanoTime() - t0) / 1e6;
      check(allocator, last, versions);

      System.out.printf(
          "%nData directory: %.1f MiB before the first version (peer), %.1f MiB after %d"
              + " versions%n",
          mib(before), mib(afterVersions), versions);
      System.out.printf(
          "kiln cache gc (%.0f ms): %d images (%d files, %.1f MiB), %d extracted layers (%.1f MiB),"
              + " %d wheel layers; data directory %.1f -> %.1f MiB%n",
          gcMs,
          gc.path("images").size(),
          gc.path("imageFiles").asInt(),
          mib(gc.path("imageBytes").asLong()),
          gc.path("extractedLayers").asInt(),
          mib(gc.path("extractedBytes").asLong()),
          gc.path("wheelLayers").asInt(),
          mib(gc.path("diskBytesBefore").asLong()),
          mib(gc.path("diskBytesAfter").asLong()));
      System.out.println("The last version answers correctly after the collection.");
      System.out.printf("%-18s %12s %12s%n", "kind", "before MiB", "after MiB");
      JsonNode kindsAfter = JSON.readTree(get(admin + "/cache/stats")).path("disk");
      for (var e : kindsAfter.properties()) {
        System.out.printf(
            "%-18s %12.1f %12.1f%n",
            e.getKey(),
            mib(kindsBefore.path(e.getKey()).path("bytes").asLong()),
            mib(e.getValue().path("bytes").asLong()));
      }
      var report = JSON.createObjectNode();
      report.put("versions", versions);
      report.put("disk_before_mib", mib(before));
      report.put("disk_after_versions_mib", mib(afterVersions));
      report.put("gc_ms", gcMs);
      report.set("gc", gc);
      Path out = Path.of("benchmarks/target/results/disk.json");
      Files.createDirectories(out.getParent());
      JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
      System.out.println("wrote " + out.toAbsolutePath());
    } finally {
      try (Stream<Path> paths = Files.walk(data)) {
        paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
      }
    }
  }

  private static void check(BufferAllocator allocator, DatabendClient.Resource r, int v)
      throws Exception {
    ArrayNode out =
        DatabendClient.call(
            allocator,
            r.endpoint(),
            r.headers(),
            "bench",
            "f",
            List.of(DataType.parse("BIGINT NULL")),
            DatabendClient.json("[[1]]"),
            Duration.ofSeconds(180));
    if (out.get(0).get(0).asLong() != 1 + v) {
      throw new IllegalStateException("version " + v + " answered " + out);
    }
  }

  private static double mib(long bytes) {
    return bytes / (double) (1 << 20);
  }

  /** The data directory's size as {@code kiln cache stats} reports it. */
  private static long diskBytes(String admin) throws Exception {
    long sum = 0;
    for (JsonNode kind : JSON.readTree(get(admin + "/cache/stats")).path("disk")) {
      sum += kind.path("bytes").asLong();
    }
    return sum;
  }

  /** Every file looks last used two days ago: time passing, for --gc-after (default 24h). */
  private static void ageEverything(Path data) throws IOException {
    FileTime old = FileTime.from(Instant.now().minus(Duration.ofDays(2)));
    try (Stream<Path> all = Files.walk(data)) {
      for (Path p : all.filter(p -> !p.toString().contains("/rootfs")).toList()) {
        try {
          Files.setLastModifiedTime(p, old);
        } catch (IOException e) {
          // gone meanwhile
        }
      }
    }
  }

  private static String get(String url) throws Exception {
    return HttpClient.newHttpClient()
        .send(HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString())
        .body();
  }

  private static String post(String url) throws Exception {
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create(url))
                .POST(HttpRequest.BodyPublishers.noBody())
                .build(),
            HttpResponse.BodyHandlers.ofString())
        .body();
  }
}
