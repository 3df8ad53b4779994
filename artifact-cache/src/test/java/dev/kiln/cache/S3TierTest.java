package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.ByteArrayInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The remote tier passes the tier contract against a real S3 server (s3proxy in this JVM). */
class S3TierTest extends StoredBlobTierContract {
  private static final AtomicInteger BUCKETS = new AtomicInteger();
  static S3ProxyServer s3;
  @TempDir Path tmp;
  private String bucket;

  @BeforeAll
  static void startS3() throws Exception {
    s3 = S3ProxyServer.shared();
  }

  @Override
  protected BlobTier newTier() throws Exception {
    return newTier(Tuning.DEFAULT);
  }

  private S3Tier newTier(Tuning tuning) throws Exception {
    bucket = "tier-" + BUCKETS.incrementAndGet();
    return new S3Tier(s3.settings(bucket, "kiln/"), tmp, tuning, new SimpleMeterRegistry());
  }

  @Override
  protected void corrupt(BlobTier tier, Digest d) {
    String key = ((S3Tier) tier).key(d);
    byte[] b = s3.getObject(bucket, key);
    b[b.length / 2] ^= 1;
    s3.putObject(bucket, key, b);
  }

  @Test
  void objectsLiveUnderThePrefixByDigest() throws Exception {
    byte[] b = randomBytes(100, 1);
    Digest d = Digest.of(b);
    tier.put(d, new ByteArrayInputStream(b));
    assertThat(s3.getObject(bucket, "kiln/sha256/" + d.hex())).isEqualTo(b);
  }

  @Test
  void largeBlobsGoUpInPartsAndComeBackWhole() throws Exception {
    tier.close();
    S3Tier t = newTier(Tuning.DEFAULT.withMultipart(5L << 20, 5L << 20));
    tier = t;
    byte[] b = randomBytes((11 << 20) + 17, 5);
    Digest d = Digest.of(b);
    Path file = tmp.resolve("big");
    Files.write(file, b);
    t.upload(d, file);
    Path back = tmp.resolve("back");
    assertThat(t.download(d, back)).isEqualTo(b.length);
    assertThat(Files.readAllBytes(back)).isEqualTo(b);
    // A multipart object's ETag has a part count: the parts really were separate.
    String etag = s3.client().headObject(r -> r.bucket(bucket).key(t.key(d))).eTag();
    assertThat(etag).contains("-3");
  }

  @Test
  void anAbsentObjectDownloadsNothing() throws Exception {
    S3Tier t = (S3Tier) tier;
    Path target = tmp.resolve("none");
    assertThat(t.download(Digest.of("absent"), target)).isEqualTo(-1);
    assertThat(Files.exists(target)).isFalse();
  }
}
