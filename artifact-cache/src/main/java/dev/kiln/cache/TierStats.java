package dev.kiln.cache;

/**
 * Counters of one cache tier since the cache was opened ({@code entries} and {@code sizeBytes} are
 * current; -1 where the tier cannot know them cheaply, such as a shared S3 bucket).
 *
 * @param tier {@code memory}, {@code local} or {@code remote}
 * @param hits reads this tier answered
 * @param misses reads that found nothing in this tier
 * @param bytesRead bytes served from this tier
 * @param bytesWritten bytes stored into this tier
 * @param evictions blobs evicted to stay under the size bound
 * @param entries blobs in the tier
 * @param sizeBytes bytes in the tier
 * @param meanHitMillis mean latency of a hit
 */
public record TierStats(
    String tier,
    long hits,
    long misses,
    long bytesRead,
    long bytesWritten,
    long evictions,
    long entries,
    long sizeBytes,
    double meanHitMillis) {

  /** Hits over lookups, or NaN before the first lookup. */
  public double hitRatio() {
    long lookups = hits + misses;
    return lookups == 0 ? Double.NaN : (double) hits / lookups;
  }
}
