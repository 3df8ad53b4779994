package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.cache.CacheStats;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kiln cache}: the artifact cache of a running server, for SREs. */
@Command(
    name = "cache",
    mixinStandardHelpOptions = true,
    header = "Inspects the artifact cache of a running server, or collects it now.",
    description = "Inspects the artifact cache of a running Kiln server.",
    footer = {"%nExamples:", "  kiln cache stats", "  kiln cache gc --dry-run"},
    subcommands = {CacheCommand.Stats.class, CacheCommand.Gc.class})
final class CacheCommand implements Runnable {
  @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    spec.commandLine().usage(System.err);
  }

  /**
   * {@code kiln cache stats}: hits, misses, bytes, latency and evictions per tier; disk by kind.
   */
  @Command(
      name = "stats",
      mixinStandardHelpOptions = true,
      header = "Prints the cache's hits, misses, bytes and sizes per tier, and disk use.",
      footer = {
        "%nExamples:",
        "  kiln cache stats",
        "  kiln cache stats --json",
        "%nExit status:",
        "  0  done",
        "  1  the server could not be reached or failed",
        "  2  bad usage"
      },
      description = {
        "Prints hits, misses, bytes, hit latency, evictions and size per cache tier (memory,",
        "local, remote), the remote write queue, import downloads done and avoided, and the",
        "disk use under the data directory by kind (images, layers, caches, records)."
      })
  static final class Stats extends AdminCommand {
    @Override
    String fetch(String url) throws AdminClient.CommandFailure {
      return AdminClient.get("kiln cache stats", url, "/cache/stats");
    }

    @Override
    void render(String body) throws Exception {
      CacheStats stats =
          new ObjectMapper()
              .configure(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES, false)
              .readValue(body, CacheStats.class);
      System.out.print(stats.table());
      JsonNode disk = new ObjectMapper().readTree(body).path("disk");
      if (disk.isObject()) {
        System.out.printf(
            "%nDisk use under the data directory%n%-18s %12s %9s%n", "kind", "MiB", "files");
        for (var e : disk.properties()) {
          System.out.printf(
              "%-18s %12.1f %9d%n",
              e.getKey(),
              e.getValue().path("bytes").asLong() / (double) (1 << 20),
              e.getValue().path("files").asLong());
        }
      }
    }
  }

  /** {@code kiln cache gc}: collect unused images, layers and caches now. */
  @Command(
      name = "gc",
      mixinStandardHelpOptions = true,
      header = "Removes now what no UDF uses; with --dry-run, shows what would go.",
      footer = {
        "%nExamples:",
        "  kiln cache gc --dry-run",
        "  kiln cache gc",
        "%nExit status:",
        "  0  done",
        "  1  the server could not be reached or failed",
        "  2  bad usage"
      },
      description = {
        "Removes now what no running UDF uses and nobody used for --gc-after: UDF images and",
        "their blobs, Jib's layer cache, wheel layers, extracted layers (then, over --disk-max,",
        "least recently used first). Prints what went, or with --dry-run what would."
      })
  static final class Gc extends AdminCommand {
    @Option(names = "--dry-run", description = "Only count what would be removed.")
    boolean dryRun;

    @Override
    String fetch(String url) throws AdminClient.CommandFailure {
      return AdminClient.post("kiln cache gc", url, "/cache/gc" + (dryRun ? "?dry_run=true" : ""));
    }

    @Override
    void render(String body) throws Exception {
      JsonNode r = new ObjectMapper().readTree(body);
      System.out.printf(
          "%s %d unused image(s) (%d files, %.1f MiB), %d wheel layer(s) (%.1f MiB), %d extracted"
              + " layer(s) (%.1f MiB), %d compressed layer(s) for registry pushes (%.1f MiB), %d"
              + " definition(s) (%.1f MiB); data directory %.1f MiB -> %.1f MiB%n",
          dryRun ? "would remove" : "removed",
          r.path("images").size(),
          r.path("imageFiles").asInt(),
          r.path("imageBytes").asLong() / (double) (1 << 20),
          r.path("wheelLayers").asInt(),
          r.path("wheelBytes").asLong() / (double) (1 << 20),
          r.path("extractedLayers").asInt(),
          r.path("extractedBytes").asLong() / (double) (1 << 20),
          r.path("registryLayers").asInt(),
          r.path("registryBytes").asLong() / (double) (1 << 20),
          r.path("definitions").asInt(),
          r.path("definitionBytes").asLong() / (double) (1 << 20),
          r.path("diskBytesBefore").asLong() / (double) (1 << 20),
          r.path("diskBytesAfter").asLong() / (double) (1 << 20));
    }
  }
}
