package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.util.Optional;
import org.junit.jupiter.api.Test;

/**
 * The tier contract plus what tiers whose copies live outside the JVM (local disk, remote) promise:
 * a stored copy that no longer matches its digest is never handed out. The memory tier has no such
 * copy (bytes are verified on entry and held by the JVM), so it passes only {@link
 * BlobTierContract}.
 */
abstract class StoredBlobTierContract extends BlobTierContract {

  /** Damages the stored copy of {@code d} (flips a byte). */
  protected abstract void corrupt(BlobTier tier, Digest d) throws Exception;

  @Test
  void aDamagedCopyIsNeverHandedOut() throws Exception {
    byte[] bytes = randomBytes(200_000, 4);
    Digest d = Digest.of(bytes);
    tier.put(d, new ByteArrayInputStream(bytes));
    corrupt(tier, d);
    Optional<InputStream> in = tier.open(d);
    if (in.isPresent()) {
      // Tiers that cannot check before handing out a stream fail it at its end.
      try (InputStream s = in.get()) {
        assertThatThrownBy(s::readAllBytes)
            .isInstanceOf(CorruptBlobException.class)
            .hasMessageContaining(d.toString());
      }
    }
    assertThat(tier.contains(d)).as("damaged copy discarded").isFalse();
    // A good copy can be stored again.
    tier.put(d, new ByteArrayInputStream(bytes));
    assertThat(read(tier, d)).isEqualTo(bytes);
  }
}
