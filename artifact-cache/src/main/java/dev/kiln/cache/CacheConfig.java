package dev.kiln.cache;

import java.nio.file.Path;
import java.util.Objects;
import java.util.Optional;

/**
 * Settings of the tiered cache.
 *
 * @param localDir where the RocksDB index, the blob files and temporary downloads live (one
 *     directory on one file system, so that finished downloads move into place atomically)
 * @param memoryMaxBytes bound of the memory tier, weighed in bytes; 0 turns the tier off
 * @param memoryMaxBlobBytes blobs larger than this never enter the memory tier
 * @param localMaxBytes the local tier evicts least recently used blobs above this size
 * @param remote the shared remote tier, if any
 */
public record CacheConfig(
    Path localDir,
    long memoryMaxBytes,
    long memoryMaxBlobBytes,
    long localMaxBytes,
    Optional<S3Settings> remote) {

  public static final long DEFAULT_MEMORY_MAX_BYTES = 256L << 20;
  public static final long DEFAULT_MEMORY_MAX_BLOB_BYTES = 8L << 20;
  public static final long DEFAULT_LOCAL_MAX_BYTES = 20L << 30;

  public CacheConfig {
    Objects.requireNonNull(localDir, "localDir");
    Objects.requireNonNull(remote, "remote (use Optional.empty() for no remote tier)");
    if (memoryMaxBytes < 0 || memoryMaxBlobBytes < 0 || localMaxBytes <= 0) {
      throw new IllegalArgumentException(
          "cache sizes must not be negative and the local tier needs room: memory "
              + memoryMaxBytes
              + ", memory blob "
              + memoryMaxBlobBytes
              + ", local "
              + localMaxBytes);
    }
  }

  /** Defaults (256 MiB memory, 8 MiB largest memory blob, 20 GiB local) with no remote tier. */
  public static CacheConfig defaults(Path localDir) {
    return new CacheConfig(
        localDir,
        DEFAULT_MEMORY_MAX_BYTES,
        DEFAULT_MEMORY_MAX_BLOB_BYTES,
        DEFAULT_LOCAL_MAX_BYTES,
        Optional.empty());
  }

  /** This configuration with a remote tier. */
  public CacheConfig withRemote(S3Settings s3) {
    return new CacheConfig(
        localDir, memoryMaxBytes, memoryMaxBlobBytes, localMaxBytes, Optional.of(s3));
  }
}
