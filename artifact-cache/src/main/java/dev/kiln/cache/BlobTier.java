package dev.kiln.cache;

import java.io.IOException;
import java.io.InputStream;
import java.util.Optional;

/**
 * One tier of the cache. Every tier passes the same contract ({@code BlobTierContract} in the
 * tests): a blob is stored under its sha256 or not at all, and a stored copy whose bytes no longer
 * match its digest is never handed out — it is discarded, and the tier reports it absent.
 */
interface BlobTier extends AutoCloseable {

  /** {@code memory}, {@code local} or {@code remote}: the tier tag of the metrics. */
  String name();

  /** True when the tier holds the blob (cheap: no read of its bytes). */
  boolean contains(Digest digest) throws IOException;

  /**
   * The blob's bytes, or empty when the tier does not have it. Tiers that cannot check the bytes
   * before handing out the stream return one that checks them while they are read and throws {@link
   * CorruptBlobException} at the end (after discarding the bad copy) when they do not match.
   */
  Optional<InputStream> open(Digest digest) throws IOException;

  /**
   * Stores bytes that must hash to {@code expected}; throws {@link CorruptBlobException} and stores
   * nothing when they do not. Storing a blob the tier already holds is harmless.
   */
  void put(Digest expected, InputStream content) throws IOException;

  /** Removes the blob if present. */
  void delete(Digest digest) throws IOException;

  /** Blobs held, or -1 when unknown. */
  long entries();

  /** Bytes held, or -1 when unknown. */
  long sizeBytes();

  @Override
  void close();
}
