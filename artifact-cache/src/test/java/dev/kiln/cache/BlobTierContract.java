package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * What every cache tier promises (memory, local, remote): blobs are stored under their sha256 or
 * not at all and read back byte for byte. Each tier's test class extends this one; tiers that keep
 * a stored copy outside the JVM extend {@link StoredBlobTierContract}.
 */
abstract class BlobTierContract {
  protected BlobTier tier;

  /** A fresh, empty tier. */
  protected abstract BlobTier newTier() throws Exception;

  @BeforeEach
  void openTier() throws Exception {
    tier = newTier();
  }

  @AfterEach
  void closeTier() {
    if (tier != null) {
      tier.close();
    }
  }

  static byte[] randomBytes(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }

  static byte[] read(BlobTier tier, Digest d) throws IOException {
    Optional<InputStream> in = tier.open(d);
    assertThat(in).as("tier %s has %s", tier.name(), d).isPresent();
    try (InputStream s = in.get()) {
      return s.readAllBytes();
    }
  }

  @Test
  void storedBlobsReadBackByteForByte() throws Exception {
    for (int size : new int[] {0, 1, 65_537, 3 << 20}) {
      byte[] bytes = randomBytes(size, size);
      Digest d = Digest.of(bytes);
      tier.put(d, new ByteArrayInputStream(bytes));
      assertThat(tier.contains(d)).as("contains blob of %d bytes", size).isTrue();
      assertThat(read(tier, d)).as("blob of %d bytes", size).isEqualTo(bytes);
    }
  }

  @Test
  void anAbsentBlobIsNeitherContainedNorOpened() throws Exception {
    Digest d = Digest.of("never stored");
    assertThat(tier.contains(d)).isFalse();
    assertThat(tier.open(d)).isEmpty();
  }

  @Test
  void bytesThatDoNotMatchTheirDigestAreRefusedAndNotStored() throws Exception {
    byte[] bytes = randomBytes(1000, 1);
    Digest claimed = Digest.of("something else");
    assertThatThrownBy(() -> tier.put(claimed, new ByteArrayInputStream(bytes)))
        .isInstanceOf(CorruptBlobException.class)
        .hasMessageContaining(claimed.toString())
        .hasMessageContaining(Digest.of(bytes).toString());
    assertThat(tier.contains(claimed)).isFalse();
    assertThat(tier.contains(Digest.of(bytes))).isFalse();
  }

  @Test
  void storingABlobAgainIsHarmless() throws Exception {
    byte[] bytes = randomBytes(4096, 2);
    Digest d = Digest.of(bytes);
    tier.put(d, new ByteArrayInputStream(bytes));
    tier.put(d, new ByteArrayInputStream(bytes));
    assertThat(read(tier, d)).isEqualTo(bytes);
    if (tier.entries() >= 0) {
      assertThat(tier.entries()).isEqualTo(1);
      assertThat(tier.sizeBytes()).isGreaterThanOrEqualTo(bytes.length);
    }
  }

  @Test
  void concurrentWritersOfOneBlobLeaveOneGoodCopy() throws Exception {
    byte[] bytes = randomBytes(1 << 20, 3);
    Digest d = Digest.of(bytes);
    ExecutorService pool = Executors.newFixedThreadPool(6);
    try {
      List<Future<?>> fs = new ArrayList<>();
      for (int i = 0; i < 6; i++) {
        fs.add(
            pool.submit(
                (Callable<Void>)
                    () -> {
                      tier.put(d, new ByteArrayInputStream(bytes));
                      return null;
                    }));
      }
      for (Future<?> f : fs) {
        f.get();
      }
    } finally {
      pool.shutdownNow();
    }
    assertThat(read(tier, d)).isEqualTo(bytes);
    if (tier.entries() >= 0) {
      assertThat(tier.entries()).isEqualTo(1);
    }
  }

  @Test
  void blobsAreIndependentAndDeletable() throws Exception {
    List<byte[]> blobs = new ArrayList<>();
    for (int i = 0; i < 5; i++) {
      byte[] b = randomBytes(100 + i, 10 + i);
      blobs.add(b);
      tier.put(Digest.of(b), new ByteArrayInputStream(b));
    }
    tier.delete(Digest.of(blobs.get(2)));
    for (int i = 0; i < 5; i++) {
      Digest d = Digest.of(blobs.get(i));
      if (i == 2) {
        assertThat(tier.contains(d)).isFalse();
        assertThat(tier.open(d)).isEmpty();
      } else {
        assertThat(read(tier, d)).isEqualTo(blobs.get(i));
      }
    }
    tier.delete(Digest.of("not there")); // harmless
  }
}
