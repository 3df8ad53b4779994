package dev.kiln.image;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * Collects Jib's layer cache ({@code layers/<digest>/} and {@code selectors/<hash>}): a cache a
 * build fills again when it misses, so entries not written since a cut-off go. Jib treats a
 * selector whose layer is gone as a miss.
 */
final class JibCache {

  /** Entries removed (or that would be) and their bytes. */
  record Collected(int entries, long bytes) {}

  private JibCache() {}

  static Collected collect(Path cacheDir, Instant unusedBefore, boolean dryRun) throws IOException {
    int entries = 0;
    long bytes = 0;
    for (String sub : List.of("selectors", "layers")) {
      Path d = cacheDir.resolve(sub);
      if (!Files.isDirectory(d)) {
        continue;
      }
      try (DirectoryStream<Path> all = Files.newDirectoryStream(d)) {
        for (Path e : all) {
          if (!Files.getLastModifiedTime(e).toInstant().isBefore(unusedBefore)) {
            continue;
          }
          entries++;
          bytes += size(e);
          if (!dryRun) {
            delete(e);
          }
        }
      }
    }
    return new Collected(entries, bytes);
  }

  private static long size(Path p) throws IOException {
    try (Stream<Path> walk = Files.walk(p)) {
      return walk.filter(Files::isRegularFile).mapToLong(f -> f.toFile().length()).sum();
    }
  }

  private static void delete(Path p) throws IOException {
    try (Stream<Path> walk = Files.walk(p)) {
      for (Path f : walk.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(f);
      }
    }
  }
}
