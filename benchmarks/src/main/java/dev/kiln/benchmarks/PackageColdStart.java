package dev.kiln.benchmarks;

import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnServer;
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
 */
final class PackageColdStart {
  private static final List<String> PACKAGES = List.of("numpy", "pandas");

  private PackageColdStart() {}

  /** Medians in ms by scenario, and every run's numbers. */
  record Result(List<Double> cold, List<Double> cachedWheels, List<Double> codeChange) {}

  static Result run(Path mirror, int runs) throws Exception {
    List<Double> cold = new ArrayList<>();
    List<Double> cached = new ArrayList<>();
    List<Double> changed = new ArrayList<>();
    MirrorServer index = MirrorServer.start(mirror);
    try {
      for (int run = 0; run < runs; run++) {
        Path data = Files.createTempDirectory("kiln-bench-packages-");
        try (KilnServer server =
                KilnServer.start(
                    ColdStartBenchmark.localServer(data)
                        .set("index-url", index.uri("simple/").toString())
                        .set("warm-pool", "1")
                        .build());
            DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort());
            BufferAllocator allocator = new RootAllocator()) {
          // The pool's first sandbox needs the runner image: the base is extracted by then.
          ColdStartBenchmark.await(
              server,
              "the server's warm-up",
              () -> ColdStartBenchmark.gauge(server, "kiln.warm.pool.ready") >= 1);
          cold.add(firstResult(client, allocator, "np_a", 1));
          cached.add(firstResult(client, allocator, "np_b", 2));
          changed.add(firstResult(client, allocator, "np_a", 3));
        }
        ColdStartBenchmark.deleteTree(data);
      }
    } finally {
      index.stop();
    }
    return new Result(cold, cached, changed);
  }

  /** {@code handler(x) = x + add} computed with numpy and pandas; ms to its first result. */
  private static double firstResult(
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
