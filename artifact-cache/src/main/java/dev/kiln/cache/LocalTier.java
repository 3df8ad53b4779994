package dev.kiln.cache;

import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.channels.FileChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Predicate;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The local disk tier: each blob is a file {@code blobs/sha256/<ab>/<hex>}; RocksDB ({@link
 * CacheIndex}) holds the index — size, last access, when the file was last verified.
 *
 * <p><b>Why files, not RocksDB values.</b> Blobs run from a few bytes to multi-GB imports and
 * layers. As files they stream in and out with a fixed buffer (a 2 GiB import never touches the
 * heap), live in the page cache, can be handed to the image builder and the sandbox as paths (hard
 * links, tar entries) without a copy, and are deleted in O(1) on eviction. As RocksDB values every
 * read would copy the whole blob into a Java array, and large values would churn through
 * compaction, rewriting gigabytes to reclaim space. RocksDB does what it is good at: small,
 * ordered, crash-safe metadata.
 *
 * <p><b>Atomic writes.</b> Bytes are written to {@code tmp/} (same file system), hashed while they
 * are written, and moved into place with an atomic rename only once they match their digest: a
 * reader sees the whole blob or none, and a process killed mid-write leaves only a temporary file,
 * removed at the next open.
 *
 * <p><b>Verified reads.</b> A file is hashed when written and its {@link Fingerprint} (size, inode,
 * mtime, ctime) recorded. A read trusts the file while the fingerprint is unchanged and hashes it
 * again otherwise; any write to the file (a flipped byte, a truncation) changes its ctime. A file
 * that no longer matches its digest is deleted and reported absent, so the caller fetches it again.
 * After an unclean stop every file is hashed again on its first read, because its data may not have
 * reached the disk.
 *
 * <p><b>Eviction.</b> Above {@code maxBytes} the least recently used blobs are deleted, except
 * pinned ones (still waiting for their remote write: the local file is their only copy) and the
 * blob just written. Each read records an access sequence number in the index, so the order
 * survives restarts.
 */
final class LocalTier implements BlobTier {
  private static final Logger log = LoggerFactory.getLogger(LocalTier.class);
  private static final Pattern HEX64 = Pattern.compile("[0-9a-f]{64}");
  private static final String CLEAN_MARKER = "clean-shutdown";
  private static final int STRIPES = 256;

  private final Path dir;
  private final Path blobs;
  private final Path tmp;
  private final CacheIndex index;
  private final long maxBytes;
  private final TierMeters meters;
  private final AtomicLong seq = new AtomicLong();
  private final AtomicLong size = new AtomicLong();
  private final AtomicLong count = new AtomicLong();
  private final ReentrantLock[] stripes = new ReentrantLock[STRIPES];
  private final ReentrantLock evicting = new ReentrantLock();

  /** Files written since open, forced to disk on a clean close. */
  private final Set<Digest> written = ConcurrentHashMap.newKeySet();

  private volatile Predicate<Digest> pinned = d -> false;
  private volatile boolean warnedFull;

  LocalTier(Path dir, CacheIndex index, long maxBytes, MeterRegistry registry) throws IOException {
    this.dir = dir;
    this.blobs = dir.resolve("blobs").resolve("sha256");
    this.tmp = dir.resolve("tmp");
    this.index = index;
    this.maxBytes = maxBytes;
    for (int i = 0; i < STRIPES; i++) {
      stripes[i] = new ReentrantLock();
    }
    Files.createDirectories(blobs);
    Files.createDirectories(tmp);
    recover();
    this.meters = new TierMeters("local", registry, this::sizeBytes);
  }

  @Override
  public String name() {
    return "local";
  }

  TierMeters meters() {
    return meters;
  }

  /** Blobs for which this returns true are never evicted. */
  void pin(Predicate<Digest> isPinned) {
    this.pinned = isPinned;
  }

  /** Where the blob lives (or would live). */
  Path path(Digest d) {
    return blobs.resolve(d.hex().substring(0, 2)).resolve(d.hex());
  }

  /** A fresh temporary file name next to the blobs, for a download that is moved in later. */
  Path newTempFile() {
    return tmp.resolve(UUID.randomUUID() + ".part");
  }

  // ------------------------------------------------------------------ recovery

  /**
   * Brings index and files back in step after any kind of stop: removes temporary files of writers
   * that died, drops entries whose file is gone, indexes blob files that have no entry (a process
   * killed between the rename and the index write) as unverified, and after an unclean stop marks
   * every blob unverified so it is hashed again on its first read.
   */
  private void recover() throws IOException {
    boolean clean = Files.deleteIfExists(dir.resolve(CLEAN_MARKER));
    try (DirectoryStream<Path> files = Files.newDirectoryStream(tmp)) {
      for (Path p : files) {
        Files.deleteIfExists(p);
      }
    }
    Map<Digest, Long> onDisk = new HashMap<>();
    try (DirectoryStream<Path> shards = Files.newDirectoryStream(blobs)) {
      for (Path shard : shards) {
        if (!Files.isDirectory(shard)) {
          Files.deleteIfExists(shard);
          continue;
        }
        try (DirectoryStream<Path> files = Files.newDirectoryStream(shard)) {
          for (Path f : files) {
            String name = f.getFileName().toString();
            if (HEX64.matcher(name).matches()
                && name.startsWith(shard.getFileName().toString())
                && Files.isRegularFile(f)) {
              onDisk.put(new Digest(name), Files.size(f));
            } else {
              log.warn("removing {} from the local cache: not a blob file", f);
              Files.deleteIfExists(f);
            }
          }
        }
      }
    }
    List<Map.Entry<Digest, CacheIndex.BlobEntry>> entries = new ArrayList<>();
    index.forEachBlob((d, e) -> entries.add(Map.entry(d, e)));
    long maxSeq = index.maxSeq();
    for (var e : entries) {
      maxSeq = Math.max(maxSeq, e.getValue().seq());
    }
    seq.set(maxSeq);
    long total = 0;
    long n = 0;
    for (var e : entries) {
      Digest d = e.getKey();
      CacheIndex.BlobEntry entry = e.getValue();
      Long fileSize = onDisk.remove(d);
      if (fileSize == null) {
        index.removeBlob(d, entry.seq());
        continue;
      }
      if (!clean || fileSize != entry.size()) {
        entry = new CacheIndex.BlobEntry(fileSize, entry.seq(), null);
        index.putBlob(d, entry, entry.seq());
      }
      total += entry.size();
      n++;
    }
    for (var e : onDisk.entrySet()) {
      index.putBlob(
          e.getKey(), new CacheIndex.BlobEntry(e.getValue(), seq.incrementAndGet(), null), -1);
      total += e.getValue();
      n++;
    }
    size.set(total);
    count.set(n);
    if (!clean && n > 0) {
      log.info(
          "local cache {} was not closed cleanly; its {} blobs are verified again on first read",
          dir,
          n);
    }
  }

  // ------------------------------------------------------------------ reads

  @Override
  public boolean contains(Digest d) throws IOException {
    return index.blob(d).isPresent() && Files.isRegularFile(path(d));
  }

  /**
   * The blob's file, verified (hashed again if it changed since it was last verified), or empty. A
   * file that does not match its digest is deleted and reported absent.
   */
  Optional<Path> file(Digest d) throws IOException {
    return hit(d).map(Hit::path);
  }

  /** A verified local file and its size. */
  record Hit(Path path, long size) {}

  /** {@link #file} with the blob's size, which the caller's metrics need. */
  Optional<Hit> hit(Digest d) throws IOException {
    ReentrantLock lock = stripe(d);
    lock.lock();
    try {
      Optional<CacheIndex.BlobEntry> found = index.blob(d);
      if (found.isEmpty()) {
        return Optional.empty();
      }
      CacheIndex.BlobEntry e = found.get();
      Path p = path(d);
      Fingerprint fp;
      try {
        fp = Fingerprint.of(p);
      } catch (NoSuchFileException gone) {
        log.warn("local cache blob {} vanished from {}; fetching it again", d, p);
        forget(d, e);
        return Optional.empty();
      }
      if (!fp.equals(e.verified())) {
        Digest actual = hash(p);
        if (!actual.equals(d) || !Fingerprint.of(p).equals(fp)) {
          meters.corrupt.increment();
          log.warn(
              "local cache blob {} at {} hashes to {} (corrupted or truncated on disk); deleted, it"
                  + " is fetched again",
              d,
              p,
              actual);
          Files.deleteIfExists(p);
          forget(d, e);
          return Optional.empty();
        }
        e = new CacheIndex.BlobEntry(fp.size(), e.seq(), fp);
      }
      index.putBlob(d, e.withSeq(seq.incrementAndGet()), e.seq());
      return Optional.of(new Hit(p, e.size()));
    } finally {
      lock.unlock();
    }
  }

  /** The size recorded for a blob, or -1. */
  long size(Digest d) throws IOException {
    return index.blob(d).map(CacheIndex.BlobEntry::size).orElse(-1L);
  }

  @Override
  public Optional<InputStream> open(Digest d) throws IOException {
    Optional<Path> p = file(d);
    if (p.isEmpty()) {
      return Optional.empty();
    }
    try {
      return Optional.of(Files.newInputStream(p.get()));
    } catch (NoSuchFileException evicted) {
      return Optional.empty();
    }
  }

  // ------------------------------------------------------------------ writes

  @Override
  public void put(Digest expected, InputStream content) throws IOException {
    write(expected, content);
  }

  /**
   * Writes the stream to a temporary file while hashing it, checks it against {@code expected}
   * (when given) and moves it into place; returns the digest.
   */
  Digest write(Digest expected, InputStream content) throws IOException {
    Path temp = newTempFile();
    try {
      MessageDigest sha = Digest.newSha256();
      long n;
      try (OutputStream out = new DigestOutputStream(Files.newOutputStream(temp), sha)) {
        n = content.transferTo(out);
      }
      Digest actual = Digest.fromSha(sha);
      if (expected != null && !expected.equals(actual)) {
        throw new CorruptBlobException(expected, actual, "a write to the local cache");
      }
      adopt(actual, temp, n);
      return actual;
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  /**
   * Moves a temporary file (from {@link #newTempFile()}) whose bytes were hashed to {@code d} while
   * written into place; returns false when a verified copy was already there.
   */
  boolean adopt(Digest d, Path temp, long bytes) throws IOException {
    ReentrantLock lock = stripe(d);
    lock.lock();
    boolean added;
    try {
      Optional<CacheIndex.BlobEntry> old = index.blob(d);
      Path target = path(d);
      if (old.isPresent() && old.get().verified() != null) {
        try {
          if (Fingerprint.of(target).equals(old.get().verified())) {
            Files.deleteIfExists(temp);
            index.putBlob(d, old.get().withSeq(seq.incrementAndGet()), old.get().seq());
            return false;
          }
        } catch (NoSuchFileException gone) {
          // Replace it below.
        }
      }
      Files.createDirectories(target.getParent());
      try {
        // Replaces an unverified or damaged copy in one step.
        Files.move(
            temp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        throw new IOException(
            "cannot move "
                + temp
                + " to "
                + target
                + " atomically; the cache directory "
                + dir
                + " must be on one file system",
            e);
      }
      Fingerprint fp = Fingerprint.of(target);
      index.putBlob(
          d,
          new CacheIndex.BlobEntry(bytes, seq.incrementAndGet(), fp),
          old.map(CacheIndex.BlobEntry::seq).orElse(-1L));
      size.addAndGet(bytes - old.map(CacheIndex.BlobEntry::size).orElse(0L));
      if (old.isEmpty()) {
        count.incrementAndGet();
      }
      written.add(d);
      meters.wrote(bytes);
      added = true;
    } finally {
      lock.unlock();
    }
    evictIfNeeded(d);
    return added;
  }

  @Override
  public void delete(Digest d) throws IOException {
    ReentrantLock lock = stripe(d);
    lock.lock();
    try {
      Optional<CacheIndex.BlobEntry> e = index.blob(d);
      Files.deleteIfExists(path(d));
      if (e.isPresent()) {
        forget(d, e.get());
      }
    } finally {
      lock.unlock();
    }
  }

  /** Drops the index entry (the caller holds the stripe lock and has removed the file). */
  private void forget(Digest d, CacheIndex.BlobEntry e) throws IOException {
    index.removeBlob(d, e.seq());
    size.addAndGet(-e.size());
    count.decrementAndGet();
    written.remove(d);
  }

  // ------------------------------------------------------------------ eviction

  /** Deletes least recently used blobs until the tier is under its bound (never {@code keep}). */
  void evictIfNeeded(Digest keep) throws IOException {
    if (size.get() <= maxBytes || !evicting.tryLock()) {
      return; // under the bound, or another thread is evicting already
    }
    try {
      int batch = 256;
      while (size.get() > maxBytes) {
        List<Digest> candidates = index.leastRecentlyUsed(batch);
        int evicted = 0;
        for (Digest d : candidates) {
          if (size.get() <= maxBytes) {
            break;
          }
          if (d.equals(keep) || pinned.test(d)) {
            continue;
          }
          delete(d);
          meters.evictions.increment();
          evicted++;
        }
        if (evicted == 0) {
          if (candidates.size() < batch) {
            if (!warnedFull) {
              warnedFull = true;
              log.warn(
                  "local cache {} holds {} bytes, above its bound of {}, and nothing more can be"
                      + " evicted (blobs still waiting for their remote write are kept)",
                  dir,
                  size.get(),
                  maxBytes);
            }
            return;
          }
          batch *= 2; // everything in this window is pinned; look further
        }
      }
      warnedFull = false;
    } finally {
      evicting.unlock();
    }
  }

  @Override
  public long entries() {
    return count.get();
  }

  @Override
  public long sizeBytes() {
    return size.get();
  }

  /**
   * Forces the files written since open to disk and leaves the marker that lets the next open trust
   * the recorded fingerprints.
   */
  @Override
  public void close() {
    try {
      for (Digest d : written) {
        try (FileChannel ch = FileChannel.open(path(d), StandardOpenOption.READ)) {
          ch.force(true);
        } catch (NoSuchFileException evicted) {
          // Gone already.
        }
      }
      Files.createFile(dir.resolve(CLEAN_MARKER));
    } catch (IOException e) {
      log.warn(
          "local cache {} not marked clean ({}); it re-verifies blobs at the next open",
          dir,
          e.toString());
    }
  }

  private ReentrantLock stripe(Digest d) {
    return stripes[Math.floorMod(d.hex().hashCode(), STRIPES)];
  }

  static Digest hash(Path file) throws IOException {
    try (InputStream in = Files.newInputStream(file)) {
      return Digest.of(in);
    }
  }
}
