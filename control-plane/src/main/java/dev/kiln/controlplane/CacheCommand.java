package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.cache.CacheStats;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kiln cache}: the artifact cache of a running server, for SREs. */
@Command(
    name = "cache",
    mixinStandardHelpOptions = true,
    description = "Inspects the artifact cache of a running Kiln server.",
    subcommands = {CacheCommand.Stats.class})
final class CacheCommand implements Runnable {
  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.err);
  }

  /** {@code kiln cache stats}: hits, misses, bytes, latency and evictions per tier. */
  @Command(
      name = "stats",
      mixinStandardHelpOptions = true,
      description = {
        "Prints hits, misses, bytes, hit latency, evictions and size per cache tier (memory,",
        "local, remote), the remote write queue, and import downloads done and avoided."
      })
  static final class Stats implements Callable<Integer> {
    @Option(
        names = "--admin",
        paramLabel = "URL",
        defaultValue = "http://127.0.0.1:9090",
        description = "The server's admin port (default ${DEFAULT-VALUE}).")
    String admin;

    @Option(names = "--json", description = "Print JSON for scripts instead of a table.")
    boolean json;

    @Override
    public Integer call() throws Exception {
      HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
      HttpResponse<String> response;
      try {
        response =
            http.send(
                HttpRequest.newBuilder(URI.create(admin.replaceAll("/+$", "") + "/cache/stats"))
                    .timeout(Duration.ofSeconds(10))
                    .build(),
                HttpResponse.BodyHandlers.ofString());
      } catch (java.io.IOException e) {
        System.err.println(
            "kiln cache stats: cannot reach "
                + admin
                + " ("
                + e.getMessage()
                + "); is kiln serve running there? (--admin)");
        return 1;
      }
      if (response.statusCode() != 200) {
        System.err.println("kiln cache stats: " + admin + " answered " + response.statusCode());
        return 1;
      }
      if (json) {
        System.out.print(response.body());
        return 0;
      }
      CacheStats stats =
          new ObjectMapper()
              .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
              .readValue(response.body(), CacheStats.class);
      System.out.print(stats.table());
      return 0;
    }
  }
}
