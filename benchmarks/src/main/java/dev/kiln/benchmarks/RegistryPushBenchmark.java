package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.image.BaseImage;
import dev.kiln.image.BuildImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageBuilder;
import dev.kiln.image.RegistryPush;
import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * Pushing a UDF image with numpy + pandas (built by a Kiln server from the local PyPI mirror) to a
 * real OCI registry (Debian's {@code docker-registry} on loopback), with Kiln's {@link
 * RegistryPush}, next to {@code skopeo copy} of the same image from the same OCI layout, gzip level
 * 1 both, each to a fresh repository of a fresh registry in the same run. Then each again to the
 * registry that has it all (only checks). Kiln's compressed layers are kept between its pushes, as
 * a server keeps them: its first push in a run compresses, later ones reuse them.
 *
 * <p>Run: {@code bin/bench push [RUNS, default 3]}. Needs {@code docker-registry} and {@code
 * skopeo} (Debian packages).
 */
final class RegistryPushBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();

  private RegistryPushBenchmark() {}

  public static void main(String[] args) throws Exception {
    int runs = args.length > 0 ? Integer.parseInt(args[0]) : 3;
    Path mirror = Path.of(System.getProperty("kiln.bench.mirror", "/opt/pypi"));
    Path data = Files.createTempDirectory("kiln-bench-push-");
    try {
      String baseReference = build(data, mirror);
      Path images = data.resolve("images");
      String name = largestUdfImage(images.resolve("oci"));
      List<double[]> rows = new ArrayList<>();
      try (ImageBuilder layout = new ImageBuilder(BaseImage.parse(baseReference), images);
          RegistryPush push = new RegistryPush(data.resolve("compressed"), 1, true)) {
        BuiltImage image = layout.find(name).orElseThrow();
        long bytes = image.layers().stream().mapToLong(l -> l.size()).sum();
        System.out.printf(
            "Image %s: %d layers, %.1f MB in the layout%n%n",
            name, image.layers().size(), bytes / 1e6);
        for (int run = 0; run < runs; run++) {
          Path dir = data.resolve("registry-" + run);
          try (Registry registry = Registry.start(dir)) {
            String kilnTarget = "localhost:" + registry.port + "/kiln/udf:run" + run;
            String skopeoTarget = "localhost:" + registry.port + "/skopeo/udf:run" + run;
            long t0 = System.nanoTime();
            RegistryPush.Pushed kiln = push.push(image, layout.configBlob(image), kilnTarget);
            long t1 = System.nanoTime();
            skopeo(images.resolve("oci"), name, skopeoTarget);
            long t2 = System.nanoTime();
            push.push(image, layout.configBlob(image), kilnTarget);
            long t3 = System.nanoTime();
            skopeo(images.resolve("oci"), name, skopeoTarget);
            long t4 = System.nanoTime();
            double[] row = {
              ColdStartBenchmark.ms(t1 - t0),
              ColdStartBenchmark.ms(t2 - t1),
              ColdStartBenchmark.ms(t3 - t2),
              ColdStartBenchmark.ms(t4 - t3)
            };
            rows.add(row);
            System.out.printf(
                "run %d: Kiln %.0f ms (%d blobs, %.1f MB sent), skopeo %.0f ms; again: Kiln %.0f"
                    + " ms, skopeo %.0f ms%n",
                run, row[0], kiln.blobsSent(), kiln.bytesSent() / 1e6, row[1], row[2], row[3]);
          }
        }
      }
      System.out.println(
          "\n| push of the numpy + pandas image | Kiln (RegistryPush) | skopeo copy |\n|---|---|---|");
      String[] what = {"to an empty registry", "again (all blobs present)"};
      for (int k = 0; k < 2; k++) {
        final int kiln = 2 * k;
        System.out.printf(
            "| %s | %.0f ms | %.0f ms |%n",
            what[k],
            FastClientThroughput.median(rows.stream().mapToDouble(r -> r[kiln]).toArray()),
            FastClientThroughput.median(rows.stream().mapToDouble(r -> r[kiln + 1]).toArray()));
      }
    } finally {
      ColdStartBenchmark.deleteTree(data);
    }
  }

  /** A server on {@code data} builds the numpy + pandas UDF's image; returns its base reference. */
  private static String build(Path data, Path mirror) throws Exception {
    MirrorServer index = MirrorServer.start(mirror);
    try (KilnServer server =
            KilnServer.start(
                ColdStartBenchmark.localServer(data)
                    .set("index-url", index.uri("simple/").toString())
                    .set("warm-pool", "0")
                    .set("zygotes", "0")
                    .build());
        DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort());
        BufferAllocator allocator = new RootAllocator()) {
      String code =
          "import numpy as np\nimport pandas as pd\n"
              + "def np_push(x):\n    return int(pd.Series(np.array([x])).sum()) + 1\n";
      DatabendClient.Resource r =
          client.apply(
              "bench", ColdStartBenchmark.spec("np_push", code, List.of("numpy", "pandas")));
      ColdStartBenchmark.callPlus(allocator, r, "np_push", 1);
      return server.config().baseImage();
    } finally {
      index.stop();
    }
  }

  /** The UDF image of the layout with the most layers (the one with the packages). */
  private static String largestUdfImage(Path oci) throws IOException {
    String best = null;
    int layers = -1;
    JsonNode index = JSON.readTree(oci.resolve("index.json").toFile());
    for (JsonNode m : index.path("manifests")) {
      String name = m.path("annotations").path("org.opencontainers.image.ref.name").asText();
      if (!name.startsWith(BuildImage.IMAGE_PREFIX) || name.contains(":pyc-")) {
        continue;
      }
      String hex = m.path("digest").asText().substring("sha256:".length());
      JsonNode manifest = JSON.readTree(oci.resolve("blobs/sha256/" + hex).toFile());
      if (manifest.path("layers").size() > layers) {
        layers = manifest.path("layers").size();
        best = name;
      }
    }
    if (best == null) {
      throw new IllegalStateException("no UDF image in " + oci);
    }
    return best;
  }

  private static void skopeo(Path layout, String name, String target) throws Exception {
    Process p =
        new ProcessBuilder(
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--dest-compress",
                "--dest-compress-format",
                "gzip",
                "--dest-compress-level",
                "1",
                "oci:" + layout + ":" + name,
                "docker://" + target)
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes());
    if (p.waitFor() != 0) {
      throw new IOException("skopeo copy failed: " + out);
    }
  }

  /** Debian's {@code docker-registry} on a free loopback port, its storage under {@code dir}. */
  private record Registry(Process process, int port) implements AutoCloseable {
    static Registry start(Path dir) throws Exception {
      int port;
      try (ServerSocket probe = new ServerSocket(0)) {
        port = probe.getLocalPort();
      }
      Files.createDirectories(dir);
      // YAML takes JSON: storage under dir, loopback only, no auth.
      Path config =
          Files.writeString(
              dir.resolveSibling(dir.getFileName() + ".yml"),
              JSON.writeValueAsString(
                  java.util.Map.of(
                      "version", "0.1",
                      "storage",
                          java.util.Map.of(
                              "filesystem", java.util.Map.of("rootdirectory", dir.toString())),
                      "http", java.util.Map.of("addr", "127.0.0.1:" + port))));
      ProcessBuilder b =
          new ProcessBuilder("docker-registry", "serve", config.toString())
              .redirectErrorStream(true)
              .redirectOutput(dir.resolveSibling(dir.getFileName() + ".log").toFile());
      Registry r = new Registry(b.start(), port);
      HttpClient http = HttpClient.newHttpClient();
      long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
      while (true) {
        try {
          HttpResponse<Void> ping =
              http.send(
                  HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/v2/")).build(),
                  HttpResponse.BodyHandlers.discarding());
          if (ping.statusCode() == 200) {
            return r;
          }
        } catch (IOException e) {
          // not listening yet
        }
        if (System.nanoTime() > deadline || !r.process.isAlive()) {
          r.close();
          throw new IOException("docker-registry did not answer on port " + port);
        }
        java.util.concurrent.locks.LockSupport.parkNanos(Duration.ofMillis(20).toNanos());
      }
    }

    @Override
    public void close() {
      process.destroy();
    }
  }
}
