package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.ByteArrayInputStream;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The local tier (RocksDB index + blob files) passes the tier contract; eviction and recovery. */
class LocalTierTest extends StoredBlobTierContract {
  @TempDir Path dir;
  private CacheIndex index;

  @Override
  protected BlobTier newTier() throws Exception {
    return open(64L << 20);
  }

  private LocalTier open(long maxBytes) throws Exception {
    index = CacheIndex.open(dir.resolve("index"));
    return new LocalTier(dir, index, maxBytes, new SimpleMeterRegistry());
  }

  /** Closes the tier cleanly (or not) and opens it again on the same directory. */
  private LocalTier reopen(long maxBytes, boolean clean) throws Exception {
    if (clean) {
      tier.close();
    }
    index.close();
    tier = open(maxBytes);
    return (LocalTier) tier;
  }

  @AfterEach
  void closeIndex() {
    if (tier != null) {
      tier.close();
      tier = null;
    }
    if (index != null) {
      index.close();
    }
  }

  @Override
  protected void corrupt(BlobTier tier, Digest d) throws Exception {
    flipByte(((LocalTier) tier).path(d), 1234);
  }

  static void flipByte(Path file, long at) throws Exception {
    try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
      f.seek(at);
      int b = f.read();
      f.seek(at);
      f.write(b ^ 0x40);
    }
  }

  private static Digest put(LocalTier t, byte[] b) throws Exception {
    return t.write(null, new ByteArrayInputStream(b));
  }

  @Test
  void evictsTheLeastRecentlyUsedBlobsAboveItsBound() throws Exception {
    tier.close();
    index.close();
    LocalTier t = open(1000);
    tier = t;
    Digest a = put(t, randomBytes(300, 1));
    Digest b = put(t, randomBytes(300, 2));
    Digest c = put(t, randomBytes(300, 3));
    assertThat(t.file(a)).isPresent(); // a is now the most recently used
    Digest d = put(t, randomBytes(300, 4));
    assertThat(t.contains(b)).as("least recently used").isFalse();
    assertThat(t.contains(a)).isTrue();
    assertThat(t.contains(c)).isTrue();
    assertThat(t.contains(d)).isTrue();
    assertThat(t.sizeBytes()).isEqualTo(900);
    assertThat(t.meters().evictions.sum()).isEqualTo(1);
    assertThat(Files.exists(t.path(b))).isFalse();

    // The order survives a restart.
    t = reopen(1000, true);
    assertThat(t.sizeBytes()).isEqualTo(900);
    put(t, randomBytes(300, 5));
    assertThat(t.contains(c)).as("least recently used after the restart").isFalse();
    assertThat(t.contains(a)).isTrue();
  }

  @Test
  void pinnedBlobsAreNeverEvicted() throws Exception {
    tier.close();
    index.close();
    LocalTier t = open(1000);
    tier = t;
    Set<Digest> pinned = new HashSet<>();
    t.pin(pinned::contains);
    Digest a = put(t, randomBytes(400, 1));
    Digest b = put(t, randomBytes(400, 2));
    pinned.add(a);
    pinned.add(b);
    Digest c = put(t, randomBytes(400, 3));
    assertThat(t.contains(a)).isTrue();
    assertThat(t.contains(b)).isTrue();
    assertThat(t.contains(c)).as("the blob just written is kept too").isTrue();
    assertThat(t.sizeBytes()).isEqualTo(1200);
    pinned.clear();
    put(t, randomBytes(100, 4));
    assertThat(t.contains(a)).as("unpinned, least recently used").isFalse();
    assertThat(t.contains(b)).as("evicting a was enough").isTrue();
    assertThat(t.sizeBytes()).isEqualTo(900);
  }

  @Test
  void aBlobDamagedOnDiskIsDetectedEvenWhenItsSizeAndMtimeAreRestored() throws Exception {
    LocalTier t = (LocalTier) tier;
    byte[] bytes = randomBytes(100_000, 7);
    Digest d = put(t, bytes);
    Path p = t.path(d);
    var mtime = Files.getLastModifiedTime(p);
    flipByte(p, 99_999);
    Files.setLastModifiedTime(p, mtime);
    assertThat(t.file(d)).isEmpty();
    assertThat(Files.exists(p)).isFalse();
    assertThat(t.entries()).isZero();
    assertThat(t.sizeBytes()).isZero();
    assertThat(t.meters().corrupt.sum()).isEqualTo(1);
  }

  @Test
  void aTruncatedBlobIsDetected() throws Exception {
    LocalTier t = (LocalTier) tier;
    Digest d = put(t, randomBytes(10_000, 8));
    try (RandomAccessFile f = new RandomAccessFile(t.path(d).toFile(), "rw")) {
      f.setLength(5_000);
    }
    assertThat(t.file(d)).isEmpty();
  }

  @Test
  void reopeningReconcilesFilesAndIndex() throws Exception {
    LocalTier t = (LocalTier) tier;
    byte[] kept = randomBytes(1000, 1);
    Digest keptDigest = put(t, kept);
    Digest lost = put(t, randomBytes(2000, 2));
    Files.delete(t.path(lost)); // a file that vanished behind the cache's back
    // A file moved into place by a process killed before it wrote the index entry.
    byte[] orphan = randomBytes(3000, 3);
    Digest orphanDigest = Digest.of(orphan);
    Files.createDirectories(t.path(orphanDigest).getParent());
    Files.write(t.path(orphanDigest), orphan);
    // A file with a digest's name and the wrong bytes.
    Digest liar = Digest.of("liar");
    Files.createDirectories(t.path(liar).getParent());
    Files.write(t.path(liar), randomBytes(500, 4));
    // A half-written temporary file.
    Files.write(t.newTempFile(), randomBytes(100, 5));

    t = reopen(64L << 20, false);
    try (Stream<Path> tmp = Files.list(dir.resolve("tmp"))) {
      assertThat(tmp).isEmpty();
    }
    assertThat(t.contains(lost)).isFalse();
    assertThat(t.entries()).isEqualTo(3);
    assertThat(t.sizeBytes()).isEqualTo(1000 + 3000 + 500);
    assertThat(read(t, keptDigest)).isEqualTo(kept);
    assertThat(read(t, orphanDigest)).isEqualTo(orphan);
    assertThat(t.file(liar)).isEmpty();
    assertThat(t.entries()).isEqualTo(2);
  }

  @Test
  void afterAnUncleanStopEveryBlobIsVerifiedAgainOnFirstRead() throws Exception {
    LocalTier t = (LocalTier) tier;
    Digest d = put(t, randomBytes(1000, 1));
    assertThat(index.blob(d).orElseThrow().verified()).isNotNull();

    t = reopen(64L << 20, true);
    assertThat(index.blob(d).orElseThrow().verified()).as("after a clean close").isNotNull();

    t = reopen(64L << 20, false);
    assertThat(index.blob(d).orElseThrow().verified()).as("after a crash").isNull();
    assertThat(t.file(d)).isPresent();
    assertThat(index.blob(d).orElseThrow().verified()).as("verified by the read").isNotNull();
  }
}
