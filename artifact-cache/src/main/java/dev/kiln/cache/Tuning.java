package dev.kiln.cache;

import java.time.Duration;

/**
 * Timeouts, retry and transfer sizes that are not user settings: production uses {@link #DEFAULT};
 * tests shorten backoffs and shrink multipart thresholds so faults and large-object paths run in
 * milliseconds.
 *
 * @param remoteBackoffMin first wait after the remote tier failed (reads skip it meanwhile; the
 *     write queue waits)
 * @param remoteBackoffMax longest wait between attempts while the remote tier stays down
 * @param s3ConnectTimeout connect timeout of the S3 client; short, so an unreachable endpoint costs
 *     little on the request path
 * @param s3SocketTimeout read timeout between bytes of the S3 client
 * @param s3Attempts attempts per S3 call (the queue retries uploads on top of this)
 * @param multipartThreshold uploads of at least this size use multipart upload
 * @param partSize size of each multipart part (S3's minimum is 5 MiB)
 * @param importConnectTimeout connect timeout of import downloads
 * @param importReadTimeout read timeout between bytes of import downloads
 * @param importAttempts attempts per import download on 5xx answers and connection errors
 * @param importBackoffMin wait before the second attempt; doubles for each further one
 * @param identityFreshness how old an import's identity may be when a request gets it ({@link
 *     ImportIdentities})
 * @param identityActiveWindow how long after its last request an import's identity is kept fresh in
 *     the background
 * @param identityMaxEntries how many (tenant, location) identities are tracked at most; each keeps
 *     its latest presigned URL (1-2 KB), and the background keeps only a few thousand fresh anyway
 * @param identityTimeout the whole of one identity check (a one-byte GET), connecting included
 */
record Tuning(
    Duration remoteBackoffMin,
    Duration remoteBackoffMax,
    Duration s3ConnectTimeout,
    Duration s3SocketTimeout,
    int s3Attempts,
    long multipartThreshold,
    long partSize,
    Duration importConnectTimeout,
    Duration importReadTimeout,
    int importAttempts,
    Duration importBackoffMin,
    Duration identityFreshness,
    Duration identityActiveWindow,
    int identityMaxEntries,
    Duration identityTimeout) {

  static final Tuning DEFAULT =
      new Tuning(
          Duration.ofMillis(500),
          Duration.ofSeconds(30),
          Duration.ofSeconds(2),
          Duration.ofSeconds(30),
          2,
          256L << 20,
          64L << 20,
          Duration.ofSeconds(10),
          Duration.ofSeconds(30),
          4,
          Duration.ofMillis(250),
          Duration.ofSeconds(1),
          Duration.ofMinutes(10),
          10_000,
          Duration.ofSeconds(3));

  Tuning withRemoteBackoff(Duration min, Duration max) {
    return new Tuning(
        min,
        max,
        s3ConnectTimeout,
        s3SocketTimeout,
        s3Attempts,
        multipartThreshold,
        partSize,
        importConnectTimeout,
        importReadTimeout,
        importAttempts,
        importBackoffMin,
        identityFreshness,
        identityActiveWindow,
        identityMaxEntries,
        identityTimeout);
  }

  Tuning withMultipart(long threshold, long part) {
    return new Tuning(
        remoteBackoffMin,
        remoteBackoffMax,
        s3ConnectTimeout,
        s3SocketTimeout,
        s3Attempts,
        threshold,
        part,
        importConnectTimeout,
        importReadTimeout,
        importAttempts,
        importBackoffMin,
        identityFreshness,
        identityActiveWindow,
        identityMaxEntries,
        identityTimeout);
  }

  Tuning withImports(Duration readTimeout, int attempts, Duration backoffMin) {
    return new Tuning(
        remoteBackoffMin,
        remoteBackoffMax,
        s3ConnectTimeout,
        s3SocketTimeout,
        s3Attempts,
        multipartThreshold,
        partSize,
        importConnectTimeout,
        readTimeout,
        attempts,
        backoffMin,
        identityFreshness,
        identityActiveWindow,
        identityMaxEntries,
        identityTimeout);
  }

  Tuning withIdentities(Duration freshness, Duration activeWindow, int maxEntries) {
    return new Tuning(
        remoteBackoffMin,
        remoteBackoffMax,
        s3ConnectTimeout,
        s3SocketTimeout,
        s3Attempts,
        multipartThreshold,
        partSize,
        importConnectTimeout,
        importReadTimeout,
        importAttempts,
        importBackoffMin,
        freshness,
        activeWindow,
        maxEntries,
        identityTimeout);
  }

  /** Exponential backoff: {@code min × 2^(failures-1)}, at most {@code max}. */
  static long backoffNanos(Duration min, Duration max, long failures) {
    long base = min.toNanos();
    int shift = (int) Math.min(Math.max(failures - 1, 0), 30);
    long v = base << shift;
    return v <= 0 || v > max.toNanos() ? max.toNanos() : v;
  }
}
