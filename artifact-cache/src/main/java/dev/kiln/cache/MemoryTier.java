package dev.kiln.cache;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.Optional;

/**
 * The memory tier: small blobs as byte arrays in a Caffeine cache bounded by their total size.
 * Blobs above {@code maxBlobBytes} never enter it, so one large blob cannot flush many small hot
 * ones. Bytes are verified when they enter (they come from a verified read or are hashed on {@link
 * #put}), and not again on each hit: memory is not where bytes rot, and hashing on every hit would
 * cost more than the hit.
 */
final class MemoryTier implements BlobTier {
  /** Accounted per entry on top of its bytes (key, array header, map node), roughly. */
  static final int ENTRY_OVERHEAD = 96;

  private final Cache<Digest, byte[]> cache;
  private final long maxBytes;
  private final long maxBlobBytes;
  private final TierMeters meters;

  MemoryTier(long maxBytes, long maxBlobBytes, MeterRegistry registry) {
    this.maxBytes = maxBytes;
    this.maxBlobBytes = Math.min(maxBlobBytes, Integer.MAX_VALUE - 1024);
    this.meters = new TierMeters("memory", registry, this::sizeBytes);
    this.cache =
        Caffeine.newBuilder()
            .maximumWeight(maxBytes)
            .weigher((Digest d, byte[] v) -> v.length + ENTRY_OVERHEAD)
            // Maintenance on the caller's thread: the work is small, and eviction counts and size
            // are exact right after a put.
            .executor(Runnable::run)
            .removalListener(
                (Digest d, byte[] v, com.github.benmanes.caffeine.cache.RemovalCause cause) -> {
                  if (cause.wasEvicted()) {
                    meters.evictions.increment();
                  }
                })
            .build();
  }

  @Override
  public String name() {
    return "memory";
  }

  TierMeters meters() {
    return meters;
  }

  /** Whether a blob of this size may enter the tier. */
  boolean accepts(long size) {
    return maxBytes > 0 && size <= maxBlobBytes && size + ENTRY_OVERHEAD <= maxBytes;
  }

  Optional<byte[]> get(Digest d) {
    return Optional.ofNullable(cache.getIfPresent(d));
  }

  /** Keeps verified bytes (the caller hashed them), when they are small enough. */
  void keep(Digest d, byte[] verified) {
    if (accepts(verified.length) && cache.asMap().putIfAbsent(d, verified) == null) {
      meters.wrote(verified.length);
    }
  }

  @Override
  public boolean contains(Digest d) {
    return cache.getIfPresent(d) != null;
  }

  @Override
  public Optional<InputStream> open(Digest d) {
    return get(d).map(ByteArrayInputStream::new);
  }

  /** Hashes the stream; keeps the bytes only when they match and are small enough. */
  @Override
  public void put(Digest expected, InputStream content) throws IOException {
    MessageDigest sha = Digest.newSha256();
    BoundedBuffer buf = new BoundedBuffer(accepts(0) ? maxBlobBytes : 0);
    try (OutputStream out = new DigestOutputStream(buf, sha)) {
      content.transferTo(out);
    }
    Digest actual = Digest.fromSha(sha);
    if (!actual.equals(expected)) {
      throw new CorruptBlobException(expected, actual, "a write to the memory cache");
    }
    if (!buf.overflowed) {
      keep(expected, buf.toByteArray());
    }
  }

  @Override
  public void delete(Digest d) {
    cache.invalidate(d);
  }

  @Override
  public long entries() {
    return cache.estimatedSize();
  }

  @Override
  public long sizeBytes() {
    return cache.policy().eviction().map(e -> e.weightedSize().orElse(0)).orElse(0L);
  }

  @Override
  public void close() {
    cache.invalidateAll();
  }

  /** Collects bytes up to a limit, then only counts them (the digest is still computed). */
  private static final class BoundedBuffer extends ByteArrayOutputStream {
    private final long limit;
    boolean overflowed;

    BoundedBuffer(long limit) {
      this.limit = limit;
    }

    @Override
    public synchronized void write(byte[] b, int off, int len) {
      if (!overflowed && count + (long) len <= limit) {
        super.write(b, off, len);
      } else {
        overflowed = true;
        reset();
      }
    }

    @Override
    public synchronized void write(int b) {
      write(new byte[] {(byte) b}, 0, 1);
    }
  }
}
