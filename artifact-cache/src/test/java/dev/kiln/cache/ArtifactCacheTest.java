package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.ByteArrayInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The three tiers together: read-through, promotion, single flight, stats and metrics. */
class ArtifactCacheTest {
  private static final AtomicInteger BUCKETS = new AtomicInteger();
  static S3ProxyServer s3;
  @TempDir Path dir;

  @BeforeAll
  static void startS3() throws Exception {
    s3 = S3ProxyServer.shared();
  }

  static CacheConfig config(Path dir, S3Settings remote) {
    return new CacheConfig(dir, 32 << 20, 1 << 20, 1L << 30, Optional.ofNullable(remote));
  }

  private S3Settings newBucket() {
    return s3.settings("cache-" + BUCKETS.incrementAndGet(), "");
  }

  static TierStats tier(CacheStats stats, String name) {
    return stats.tiers().stream().filter(t -> t.tier().equals(name)).findFirst().orElseThrow();
  }

  @Test
  void aPutBlobIsOneLocalLookupAwayAndGoesToTheRemoteTier() throws Exception {
    S3Settings remote = newBucket();
    byte[] bytes = BlobTierContract.randomBytes(10_000, 1);
    try (ArtifactCache cache = ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry())) {
      Digest d = cache.put(new ByteArrayInputStream(bytes));
      assertThat(d).isEqualTo(Digest.of(bytes));
      Path p = cache.file(d).orElseThrow();
      assertThat(Files.readAllBytes(p)).isEqualTo(bytes);
      assertThat(cache.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();
      assertThat(s3.getObject(remote.bucket(), "sha256/" + d.hex())).isEqualTo(bytes);
      CacheStats stats = cache.stats();
      assertThat(tier(stats, "local").hits()).isEqualTo(1);
      assertThat(tier(stats, "local").entries()).isEqualTo(1);
      assertThat(tier(stats, "local").bytesWritten()).isEqualTo(bytes.length);
      assertThat(tier(stats, "remote").bytesWritten()).isEqualTo(bytes.length);
      assertThat(stats.remoteQueueDepth()).isZero();
    }
  }

  @Test
  void aBlobPutWithTheWrongDigestIsNeitherStoredNorQueued() throws Exception {
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, newBucket()), new SimpleMeterRegistry())) {
      Digest claimed = Digest.of("claimed");
      assertThatThrownBy(() -> cache.put(claimed, new ByteArrayInputStream(new byte[] {1, 2})))
          .isInstanceOf(CorruptBlobException.class);
      assertThat(cache.contains(claimed)).isFalse();
      assertThat(cache.remoteQueueDepth()).isZero();
    }
  }

  @Test
  void readsGoThroughTheTiersAndPromote() throws Exception {
    S3Settings remote = newBucket();
    byte[] bytes = BlobTierContract.randomBytes(100_000, 2);
    Digest d;
    try (ArtifactCache writer =
        ArtifactCache.open(config(dir.resolve("node-a"), remote), new SimpleMeterRegistry())) {
      d = writer.put(new ByteArrayInputStream(bytes));
      assertThat(writer.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();
    }
    // Another node, same bucket: nothing local yet.
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir.resolve("node-b"), remote), new SimpleMeterRegistry())) {
      assertThat(cache.contains(d)).isTrue(); // remote HEAD
      assertThat(Files.readAllBytes(cache.file(d).orElseThrow())).isEqualTo(bytes);
      CacheStats first = cache.stats();
      assertThat(tier(first, "local").misses()).isEqualTo(1);
      assertThat(tier(first, "remote").hits()).isEqualTo(1);
      assertThat(tier(first, "remote").bytesRead()).isEqualTo(bytes.length);

      assertThat(cache.file(d)).isPresent(); // promoted: a local hit now
      assertThat(cache.bytes(d)).hasValueSatisfying(b -> assertThat(b).isEqualTo(bytes));
      assertThat(cache.bytes(d)).hasValueSatisfying(b -> assertThat(b).isEqualTo(bytes));
      CacheStats after = cache.stats();
      assertThat(tier(after, "remote").hits()).as("fetched from S3 once").isEqualTo(1);
      assertThat(tier(after, "local").hits()).isEqualTo(2);
      assertThat(tier(after, "memory").misses()).isEqualTo(1);
      assertThat(tier(after, "memory").hits()).isEqualTo(1);
      assertThat(tier(after, "memory").entries()).isEqualTo(1);
      assertThat(cache.remoteQueueDepth()).as("a promoted blob is not written back").isZero();
    }
  }

  @Test
  void aBlobNoTierHasIsEmpty() throws Exception {
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, newBucket()), new SimpleMeterRegistry())) {
      Digest d = Digest.of("nowhere");
      assertThat(cache.file(d)).isEmpty();
      assertThat(cache.bytes(d)).isEmpty();
      assertThat(cache.contains(d)).isFalse();
      assertThat(tier(cache.stats(), "remote").misses()).isEqualTo(2);
    }
  }

  @Test
  void concurrentReadsOfARemoteBlobFetchItOnce() throws Exception {
    S3Settings remote = newBucket();
    byte[] bytes = BlobTierContract.randomBytes(4 << 20, 3);
    Digest d = Digest.of(bytes);
    s3.putObject(remote.bucket(), "sha256/" + d.hex(), bytes);
    try (ArtifactCache cache = ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry())) {
      int n = 8;
      CountDownLatch go = new CountDownLatch(1);
      ExecutorService pool = Executors.newFixedThreadPool(n);
      List<Future<Path>> results = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        results.add(
            pool.submit(
                (Callable<Path>)
                    () -> {
                      go.await();
                      return cache.file(d).orElseThrow();
                    }));
      }
      go.countDown();
      for (Future<Path> f : results) {
        assertThat(Files.readAllBytes(f.get())).isEqualTo(bytes);
      }
      pool.shutdown();
      assertThat(tier(cache.stats(), "remote").hits()).isEqualTo(1);
      assertThat(tier(cache.stats(), "remote").bytesRead()).isEqualTo(bytes.length);
    }
  }

  @Test
  void aDamagedRemoteCopyIsAMissAndIsDeleted() throws Exception {
    S3Settings remote = newBucket();
    byte[] bytes = BlobTierContract.randomBytes(5000, 4);
    Digest d = Digest.of(bytes);
    byte[] bad = bytes.clone();
    bad[100] ^= 1;
    s3.putObject(remote.bucket(), "sha256/" + d.hex(), bad);
    try (ArtifactCache cache = ArtifactCache.open(config(dir, remote), new SimpleMeterRegistry())) {
      assertThat(cache.file(d)).isEmpty();
      assertThat(s3.exists(remote.bucket(), "sha256/" + d.hex())).isFalse();
      try (var tmp = Files.list(dir.resolve("tmp"))) {
        assertThat(tmp).as("nothing of the bad download left").isEmpty();
      }
      cache.put(d, new ByteArrayInputStream(bytes)); // a good copy replaces it
      assertThat(cache.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();
      assertThat(s3.getObject(remote.bucket(), "sha256/" + d.hex())).isEqualTo(bytes);
    }
  }

  @Test
  void metersUseTheDocumentedPrometheusNames() throws Exception {
    PrometheusMeterRegistry prometheus = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    try (ArtifactCache cache = ArtifactCache.open(config(dir, newBucket()), prometheus)) {
      Digest d = cache.put(new ByteArrayInputStream(new byte[] {1, 2, 3}));
      cache.file(d);
      cache.file(Digest.of("absent"));
      cache.bytes(d);
      String scrape = prometheus.scrape();
      assertThat(scrape)
          .contains("kiln_cache_hits_total{tier=\"local\"} 2.0")
          .contains("kiln_cache_misses_total{tier=\"local\"} 1.0")
          .contains("kiln_cache_misses_total{tier=\"remote\"} 1.0")
          .contains("kiln_cache_bytes_total{direction=\"read\",tier=\"local\"} 6.0")
          .contains("kiln_cache_bytes_total{direction=\"write\",tier=\"local\"} 3.0")
          .contains("kiln_cache_latency_seconds_count{tier=\"local\"} 2")
          .contains("kiln_cache_evictions_total{tier=\"memory\"} 0.0")
          .contains("kiln_cache_size_bytes{tier=\"local\"} 3.0")
          .contains("kiln_cache_remote_queue ")
          .contains("kiln_cache_import_downloads_total 0.0")
          .contains("kiln_cache_import_avoided_total 0.0");
    }
    assertThat(prometheus.scrape()).as("meters removed on close").doesNotContain("kiln_cache");
  }

  @Test
  void statsReadAsATable() throws Exception {
    try (ArtifactCache cache =
        ArtifactCache.open(config(dir, newBucket()), new SimpleMeterRegistry())) {
      Digest d = cache.put(new ByteArrayInputStream(new byte[2048]));
      cache.file(d);
      String table = cache.stats().table();
      assertThat(table.lines().toList()).hasSize(5);
      assertThat(table)
          .contains("tier")
          .contains("hit %")
          .containsPattern("local\\s+1\\s+0\\s+100\\.0\\s+2\\.0 KiB\\s+2\\.0 KiB")
          .contains("remote write queue:");
    }
  }

  @Test
  void withoutARemoteTierEverythingStaysLocal() throws Exception {
    try (ArtifactCache cache =
        ArtifactCache.open(CacheConfig.defaults(dir), new SimpleMeterRegistry())) {
      Digest d = cache.put(new ByteArrayInputStream(new byte[] {42}));
      assertThat(cache.file(d)).isPresent();
      assertThat(cache.file(Digest.of("x"))).isEmpty();
      assertThat(cache.awaitRemoteWrites(Duration.ZERO)).isTrue();
      assertThat(cache.stats().tiers())
          .extracting(TierStats::tier)
          .containsExactly("memory", "local");
    }
  }
}
