package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnServer;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * Cold starts of UDFs with packages (numpy + pandas), request to first correct result, each run on
 * a fresh data directory served by the machine's local PyPI mirror over HTTP: nothing cached but
 * the base image (its warm-up is awaited, as on a server that has been up for a while):
 *
 * <ul>
 *   <li>cold: the first UDF that asks for the packages (resolve, download, wheel layers, image,
 *       sandbox, runners importing them);
 *   <li>cached wheels: another UDF with the same packages;
 *   <li>code change: the first UDF with its code changed (Databend's CREATE OR REPLACE).
 * </ul>
 *
 * <p>Those three on a server without zygotes ({@code --zygotes 0}); then a server with one ({@code
 * --zygotes 1}) on the same data directory: a new UDF with the packages (cached wheels, no zygote
 * yet: a miss, after which the zygote of the set is started), then, once the zygote is ready,
 * another new UDF and a code change, each placed in it.
 */
final class PackageColdStart {
  private static final List<String> PACKAGES = List.of("numpy", "pandas");

  private PackageColdStart() {}

  /** Every run's ms by scenario. */
  record Result(
      List<Double> cold,
      List<Double> cachedWheels,
      List<Double> codeChange,
      List<Double> zygoteMiss,
      List<Double> zygoteHit,
      List<Double> zygoteCodeChange,
      List<Double> zygoteMiB) {}

  static Result run(Path mirror, int runs) throws Exception {
    Result result =
        new Result(
            new ArrayList<>(),
            new ArrayList<>(),
            new ArrayList<>(),
            new ArrayList<>(),
            new ArrayList<>(),
            new ArrayList<>(),
            new ArrayList<>());
    MirrorServer index = MirrorServer.start(mirror);
    try {
      for (int run = 0; run < runs; run++) {
        Path data = Files.createTempDirectory("kiln-bench-packages-");
        try (Server s = new Server(data, index, 0)) {
          result.cold().add(firstResult(s.client, s.allocator, "np_a", 1));
          result.cachedWheels().add(firstResult(s.client, s.allocator, "np_b", 2));
          result.codeChange().add(firstResult(s.client, s.allocator, "np_a", 3));
        }
        try (Server s = new Server(data, index, 1)) {
          result.zygoteMiss().add(firstResult(s.client, s.allocator, "np_c", 4));
          s.awaitZygote();
          result.zygoteMiB().add(s.zygoteMemoryMiB());
          result.zygoteHit().add(firstResult(s.client, s.allocator, "np_d", 5));
          s.awaitZygote();
          result.zygoteCodeChange().add(firstResult(s.client, s.allocator, "np_c", 6));
        }
        ColdStartBenchmark.deleteTree(data);
      }
    } finally {
      index.stop();
    }
    return result;
  }

  /** A server on {@code data} with one warm sandbox and {@code zygotes}, warmed up. */
  private static final class Server implements AutoCloseable {
    final KilnServer server;
    final DatabendClient client;
    final BufferAllocator allocator = new RootAllocator();

    Server(Path data, MirrorServer index, int zygotes) throws Exception {
      server =
          KilnServer.start(
              ColdStartBenchmark.localServer(data)
                  .set("index-url", index.uri("simple/").toString())
                  .set("warm-pool", "1")
                  .set("zygotes", Integer.toString(zygotes))
                  .build());
      client = new DatabendClient("127.0.0.1:" + server.grpcPort());
      // The pool's first sandbox needs the runner image: the base is extracted by then.
      ColdStartBenchmark.await(
          server,
          "the server's warm-up",
          () -> ColdStartBenchmark.gauge(server, "kiln.warm.pool.ready") >= 1);
    }

    void awaitZygote() {
      ColdStartBenchmark.await(
          server,
          "a zygote of numpy + pandas",
          () -> ColdStartBenchmark.gauge(server, "kiln.zygotes.ready") >= 1);
    }

    /** Memory the ready zygote holds (its cgroup), as {@code kiln ps} shows it. */
    double zygoteMemoryMiB() throws Exception {
      HttpResponse<String> ps =
          HttpClient.newHttpClient()
              .send(
                  HttpRequest.newBuilder(
                          URI.create("http://127.0.0.1:" + server.adminPort() + "/sandboxes"))
                      .build(),
                  HttpResponse.BodyHandlers.ofString());
      for (JsonNode n : new ObjectMapper().readTree(ps.body())) {
        if (n.path("handler").asText().startsWith("(zygote)")) {
          return n.path("memory_bytes").asLong() / (double) (1 << 20);
        }
      }
      throw new IllegalStateException("no zygote in /sandboxes: " + ps.body());
    }

    @Override
    public void close() throws Exception {
      allocator.close();
      client.close();
      server.close();
    }
  }

  /** {@code handler(x) = x + add} computed with numpy and pandas; ms to its first result. */
  static double firstResult(
      DatabendClient client, BufferAllocator allocator, String handler, long add) throws Exception {
    String code =
        "import numpy as np\n"
            + "import pandas as pd\n"
            + "def "
            + handler
            + "(x):\n"
            + "    return int(pd.Series(np.array([x], dtype=np.int64)).sum()) + "
            + add
            + "\n";
    long t0 = System.nanoTime();
    DatabendClient.Resource r = client.apply("bench", spec(handler, code));
    ColdStartBenchmark.callPlus(allocator, r, handler, add);
    return ColdStartBenchmark.ms(System.nanoTime() - t0);
  }

  private static String spec(String handler, String code) {
    return ColdStartBenchmark.spec(handler, code, PACKAGES);
  }
}
