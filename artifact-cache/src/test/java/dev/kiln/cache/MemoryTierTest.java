package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.ByteArrayInputStream;
import org.junit.jupiter.api.Test;

/** The memory tier passes the tier contract, is bounded by bytes and keeps large blobs out. */
class MemoryTierTest extends BlobTierContract {

  @Override
  protected BlobTier newTier() {
    return new MemoryTier(16 << 20, 8 << 20, new SimpleMeterRegistry());
  }

  @Test
  void isBoundedByBytesAndCountsEvictions() throws Exception {
    MemoryTier m = new MemoryTier(1 << 20, 512 << 10, new SimpleMeterRegistry());
    for (int i = 0; i < 10; i++) {
      byte[] b = randomBytes(200 << 10, i);
      m.put(Digest.of(b), new ByteArrayInputStream(b));
    }
    assertThat(m.sizeBytes()).isLessThanOrEqualTo(1 << 20);
    assertThat(m.entries()).isBetween(1L, 5L);
    assertThat(m.meters().evictions.sum()).isEqualTo(10 - m.entries());
  }

  @Test
  void blobsAboveTheBlobLimitNeverEnter() throws Exception {
    MemoryTier m = new MemoryTier(16 << 20, 1 << 20, new SimpleMeterRegistry());
    byte[] big = randomBytes((1 << 20) + 1, 1);
    m.put(Digest.of(big), new ByteArrayInputStream(big));
    assertThat(m.contains(Digest.of(big))).isFalse();
    byte[] small = randomBytes(1 << 20, 2);
    m.put(Digest.of(small), new ByteArrayInputStream(small));
    assertThat(m.contains(Digest.of(small))).isTrue();
  }

  @Test
  void aZeroBoundTurnsTheTierOff() throws Exception {
    MemoryTier m = new MemoryTier(0, 1 << 20, new SimpleMeterRegistry());
    byte[] b = randomBytes(10, 1);
    m.put(Digest.of(b), new ByteArrayInputStream(b));
    assertThat(m.contains(Digest.of(b))).isFalse();
  }
}
