package dev.kiln.cache;

import static dev.kiln.cache.ArtifactCacheTest.config;
import static dev.kiln.cache.ArtifactCacheTest.tier;
import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.ByteArrayInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Faults: S3 down and back, a damaged local blob, a restart with remote writes still queued. */
class ArtifactCacheFaultsTest {
  private static final Tuning FAST =
      Tuning.DEFAULT.withRemoteBackoff(Duration.ofMillis(50), Duration.ofMillis(400));
  private static final AtomicInteger BUCKETS = new AtomicInteger();
  static S3ProxyServer s3;
  @TempDir Path dir;
  String bucket;
  S3Settings remote;

  @BeforeAll
  static void startS3() throws Exception {
    s3 = S3ProxyServer.start();
  }

  @AfterAll
  static void stopS3() throws Exception {
    s3.close();
  }

  @BeforeEach
  void newBucket() {
    bucket = "faults-" + BUCKETS.incrementAndGet();
    remote = s3.settings(bucket, "node/");
  }

  @AfterEach
  void s3IsBack() throws Exception {
    s3.restart(); // for the next test, should this one have failed while S3 was down
  }

  private String key(Digest d) {
    return "node/sha256/" + d.hex();
  }

  @Test
  void whileS3IsDownRequestsAreServedLocallyAndTheWriteHappensWhenItIsBack() throws Exception {
    byte[] before = BlobTierContract.randomBytes(5000, 1);
    byte[] during = BlobTierContract.randomBytes(7000, 2);
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry(), FAST)) {
      Digest old = cache.put(new ByteArrayInputStream(before));
      assertThat(cache.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();

      s3.stop();
      Digest fresh = cache.put(new ByteArrayInputStream(during)); // does not wait for S3
      assertThat(Files.readAllBytes(cache.file(fresh).orElseThrow())).isEqualTo(during);
      assertThat(Files.readAllBytes(cache.file(old).orElseThrow())).isEqualTo(before);
      assertThat(cache.file(Digest.of("only the origin has this"))).isEmpty();
      assertThat(cache.contains(Digest.of("nor this"))).isFalse();
      assertThat(cache.awaitRemoteWrites(Duration.ofMillis(300)))
          .as("no remote write while S3 is down")
          .isFalse();
      assertThat(cache.remoteQueueDepth()).isEqualTo(1);

      s3.restart();
      assertThat(cache.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();
      assertThat(s3.getObject(bucket, key(fresh))).isEqualTo(during);
      assertThat(cache.stats().remoteQueueDepth()).isZero();
    }
  }

  @Test
  void readsUseS3AgainOnceTheBackgroundProbeFindsItBack() throws Exception {
    byte[] bytes = BlobTierContract.randomBytes(2000, 6);
    Digest d = Digest.of(bytes);
    s3.putObject(bucket, key(d), bytes); // put there by another node
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry(), FAST)) {
      s3.stop();
      assertThat(cache.file(d)).as("S3 down").isEmpty();
      s3.restart();
      // Nothing is queued: the writer's probe alone must notice that S3 is back.
      long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
      while (cache.file(d).isEmpty()) {
        assertThat(System.nanoTime()).as("S3 used again in time").isLessThan(deadline);
        java.util.concurrent.locks.LockSupport.parkNanos(Duration.ofMillis(20).toNanos());
      }
      assertThat(Files.readAllBytes(cache.file(d).orElseThrow())).isEqualTo(bytes);
    }
  }

  @Test
  void queuedRemoteWritesSurviveARestart() throws Exception {
    byte[] bytes = BlobTierContract.randomBytes(3000, 3);
    Digest d;
    s3.stop();
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry(), FAST)) {
      d = cache.put(new ByteArrayInputStream(bytes));
      assertThat(cache.remoteQueueDepth()).isEqualTo(1);
    }
    s3.restart();
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry(), FAST)) {
      assertThat(cache.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();
    }
    assertThat(s3.getObject(bucket, key(d))).isEqualTo(bytes);
  }

  @Test
  void aDamagedLocalBlobIsDetectedAndFetchedAgain() throws Exception {
    byte[] bytes = BlobTierContract.randomBytes(300_000, 4);
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry(), FAST)) {
      Digest d = cache.put(new ByteArrayInputStream(bytes));
      assertThat(cache.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();
      Path local = cache.file(d).orElseThrow();
      LocalTierTest.flipByte(local, 150_000);

      Path again = cache.file(d).orElseThrow();
      assertThat(Files.readAllBytes(again)).isEqualTo(bytes);
      CacheStats stats = cache.stats();
      assertThat(tier(stats, "remote").hits()).as("fetched again from S3").isEqualTo(1);
      assertThat(tier(stats, "local").misses()).isEqualTo(1);
    }
  }

  @Test
  void aDamagedLocalBlobWithNoOtherCopyIsAMiss() throws Exception {
    byte[] bytes = BlobTierContract.randomBytes(1000, 5);
    try (ArtifactCache cache =
        ArtifactCache.open(CacheConfig.defaults(dir), new SimpleMeterRegistry(), FAST)) {
      Digest d = cache.put(new ByteArrayInputStream(bytes));
      LocalTierTest.flipByte(cache.file(d).orElseThrow(), 10);
      assertThat(cache.file(d)).isEmpty();
      assertThat(cache.contains(d)).isFalse();
    }
  }
}
