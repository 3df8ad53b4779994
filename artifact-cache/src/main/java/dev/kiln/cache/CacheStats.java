package dev.kiln.cache;

import java.util.List;
import java.util.Locale;

/**
 * A snapshot of the cache's counters, for {@code kiln cache stats} (records, so Jackson writes them
 * as JSON as they are).
 *
 * @param tiers one entry per tier, fastest first
 * @param remoteQueueDepth blobs waiting to be written to the remote tier
 * @param importDownloads imports downloaded through their presigned URL
 * @param importDownloadsAvoided import fetches answered from the cache without a download
 */
public record CacheStats(
    List<TierStats> tiers,
    long remoteQueueDepth,
    long importDownloads,
    long importDownloadsAvoided) {

  public CacheStats {
    tiers = List.copyOf(tiers);
  }

  /** The stats as a table for people, e.g. for {@code kiln cache stats}. */
  public String table() {
    StringBuilder sb = new StringBuilder();
    String row = "%-7s %10s %10s %7s %11s %11s %9s %9s %11s %10s%n";
    sb.append(
        String.format(
            Locale.ROOT,
            row,
            "tier",
            "hits",
            "misses",
            "hit %",
            "read",
            "written",
            "evicted",
            "entries",
            "size",
            "hit ms"));
    for (TierStats t : tiers) {
      double ratio = t.hitRatio();
      sb.append(
          String.format(
              Locale.ROOT,
              row,
              t.tier(),
              t.hits(),
              t.misses(),
              Double.isNaN(ratio) ? "-" : String.format(Locale.ROOT, "%.1f", 100 * ratio),
              bytes(t.bytesRead()),
              bytes(t.bytesWritten()),
              t.evictions(),
              t.entries() < 0 ? "-" : Long.toString(t.entries()),
              t.sizeBytes() < 0 ? "-" : bytes(t.sizeBytes()),
              t.hits() == 0 ? "-" : String.format(Locale.ROOT, "%.3f", t.meanHitMillis())));
    }
    sb.append(
        String.format(
            Locale.ROOT,
            "remote write queue: %d   imports downloaded: %d   import downloads avoided: %d%n",
            remoteQueueDepth,
            importDownloads,
            importDownloadsAvoided));
    return sb.toString();
  }

  /** Binary units, one decimal: {@code 512 B}, {@code 1.5 KiB}, {@code 20.0 GiB}. */
  static String bytes(long n) {
    if (n < 1024) {
      return n + " B";
    }
    String[] units = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = n;
    int u = -1;
    while (v >= 1024 && u < units.length - 1) {
      v /= 1024;
      u++;
    }
    return String.format(Locale.ROOT, "%.1f %s", v, units[u]);
  }
}
