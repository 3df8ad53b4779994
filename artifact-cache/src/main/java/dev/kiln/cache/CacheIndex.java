package dev.kiln.cache;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import java.util.function.BiConsumer;
import org.rocksdb.ColumnFamilyDescriptor;
import org.rocksdb.ColumnFamilyHandle;
import org.rocksdb.ColumnFamilyOptions;
import org.rocksdb.DBOptions;
import org.rocksdb.InfoLogLevel;
import org.rocksdb.RocksDB;
import org.rocksdb.RocksDBException;
import org.rocksdb.RocksIterator;
import org.rocksdb.WriteBatch;
import org.rocksdb.WriteOptions;

/**
 * The local tier's durable metadata in RocksDB; the blobs themselves are files (see {@link
 * LocalTier} for why). Column families:
 *
 * <ul>
 *   <li>{@code blobs}: digest → size, access sequence number, and the file's fingerprint when its
 *       bytes were last verified;
 *   <li>{@code lru}: (access sequence, digest) → nothing, so eviction reads the least recently used
 *       blobs first without scanning the whole index;
 *   <li>{@code imports}: (tenant, location, tag) → digest of the import's content;
 *   <li>{@code uploads}: digest → enqueue time: the durable queue of writes to the remote tier.
 * </ul>
 *
 * <p>Writes go through RocksDB's write-ahead log without an fsync each: a killed process loses
 * nothing, and after a power loss the cache re-verifies every blob before handing it out (see
 * {@link LocalTier#recover}).
 */
final class CacheIndex implements AutoCloseable {
  private static final HexFormat HEX = HexFormat.of();

  static {
    RocksDB.loadLibrary();
  }

  /** What the index knows of one local blob. {@code verified} is null until it is verified. */
  record BlobEntry(long size, long seq, Fingerprint verified) {
    byte[] encode() {
      ByteBuffer b = ByteBuffer.allocate(17 + (verified == null ? 0 : Fingerprint.BYTES));
      b.putLong(size).putLong(seq).put((byte) (verified == null ? 0 : 1));
      if (verified != null) {
        verified.writeTo(b);
      }
      return b.array();
    }

    static BlobEntry decode(byte[] bytes) {
      ByteBuffer b = ByteBuffer.wrap(bytes);
      long size = b.getLong();
      long seq = b.getLong();
      Fingerprint fp = b.get() == 1 ? Fingerprint.readFrom(b) : null;
      return new BlobEntry(size, seq, fp);
    }

    BlobEntry withSeq(long s) {
      return new BlobEntry(size, s, verified);
    }

    BlobEntry withVerified(Fingerprint fp) {
      return new BlobEntry(size, seq, fp);
    }
  }

  private final DBOptions dbOptions;
  private final ColumnFamilyOptions cfOptions;
  private final WriteOptions writeOptions;
  private final RocksDB db;
  private final List<ColumnFamilyHandle> handles;
  private final ColumnFamilyHandle blobs;
  private final ColumnFamilyHandle lru;
  private final ColumnFamilyHandle imports;
  private final ColumnFamilyHandle uploads;

  private CacheIndex(
      DBOptions dbOptions,
      ColumnFamilyOptions cfOptions,
      RocksDB db,
      List<ColumnFamilyHandle> handles) {
    this.dbOptions = dbOptions;
    this.cfOptions = cfOptions;
    this.writeOptions = new WriteOptions();
    this.db = db;
    this.handles = handles;
    this.blobs = handles.get(1);
    this.lru = handles.get(2);
    this.imports = handles.get(3);
    this.uploads = handles.get(4);
  }

  static CacheIndex open(Path dir) throws IOException {
    Files.createDirectories(dir);
    // A small index: small memtables, and no info log that grows without bound.
    DBOptions dbOptions =
        new DBOptions()
            .setCreateIfMissing(true)
            .setCreateMissingColumnFamilies(true)
            .setInfoLogLevel(InfoLogLevel.ERROR_LEVEL)
            .setKeepLogFileNum(2)
            .setMaxTotalWalSize(64L << 20);
    ColumnFamilyOptions cfOptions = new ColumnFamilyOptions().setWriteBufferSize(4L << 20);
    List<ColumnFamilyDescriptor> descriptors =
        List.of(
            new ColumnFamilyDescriptor(RocksDB.DEFAULT_COLUMN_FAMILY, cfOptions),
            new ColumnFamilyDescriptor(bytes("blobs"), cfOptions),
            new ColumnFamilyDescriptor(bytes("lru"), cfOptions),
            new ColumnFamilyDescriptor(bytes("imports"), cfOptions),
            new ColumnFamilyDescriptor(bytes("uploads"), cfOptions));
    List<ColumnFamilyHandle> handles = new ArrayList<>();
    try {
      RocksDB db = RocksDB.open(dbOptions, dir.toString(), descriptors, handles);
      return new CacheIndex(dbOptions, cfOptions, db, handles);
    } catch (RocksDBException e) {
      dbOptions.close();
      cfOptions.close();
      String hint =
          e.getMessage() != null && e.getMessage().contains("lock")
              ? "; another process (a second Kiln server?) has this cache open"
              : "";
      throw new IOException(
          "cannot open the cache index at " + dir + ": " + e.getMessage() + hint, e);
    }
  }

  // ------------------------------------------------------------------ blobs and LRU order

  Optional<BlobEntry> blob(Digest d) throws IOException {
    byte[] v = get(blobs, raw(d));
    return v == null ? Optional.empty() : Optional.of(BlobEntry.decode(v));
  }

  /**
   * Writes the entry and moves the blob in the LRU order from {@code oldSeq} (-1: new) to its seq.
   */
  void putBlob(Digest d, BlobEntry entry, long oldSeq) throws IOException {
    try (WriteBatch batch = new WriteBatch()) {
      byte[] key = raw(d);
      batch.put(blobs, key, entry.encode());
      if (oldSeq >= 0 && oldSeq != entry.seq()) {
        batch.delete(lru, lruKey(oldSeq, key));
      }
      batch.put(lru, lruKey(entry.seq(), key), new byte[0]);
      db.write(writeOptions, batch);
    } catch (RocksDBException e) {
      throw failed("write", e);
    }
  }

  void removeBlob(Digest d, long seq) throws IOException {
    try (WriteBatch batch = new WriteBatch()) {
      byte[] key = raw(d);
      batch.delete(blobs, key);
      batch.delete(lru, lruKey(seq, key));
      db.write(writeOptions, batch);
    } catch (RocksDBException e) {
      throw failed("write", e);
    }
  }

  void forEachBlob(BiConsumer<Digest, BlobEntry> action) {
    try (RocksIterator it = db.newIterator(blobs)) {
      for (it.seekToFirst(); it.isValid(); it.next()) {
        action.accept(digest(it.key()), BlobEntry.decode(it.value()));
      }
    }
  }

  /** Up to {@code limit} blobs, least recently used first. */
  List<Digest> leastRecentlyUsed(int limit) {
    List<Digest> out = new ArrayList<>();
    try (RocksIterator it = db.newIterator(lru)) {
      for (it.seekToFirst(); it.isValid() && out.size() < limit; it.next()) {
        byte[] k = it.key();
        byte[] d = new byte[32];
        System.arraycopy(k, 8, d, 0, 32);
        out.add(digest(d));
      }
    }
    return out;
  }

  /** The highest access sequence number in use, or 0. */
  long maxSeq() {
    try (RocksIterator it = db.newIterator(lru)) {
      it.seekToLast();
      return it.isValid() ? ByteBuffer.wrap(it.key()).getLong() : 0;
    }
  }

  /** Removes every LRU entry (before {@link LocalTier#recover} rebuilds them from the blobs). */
  void clearLru() throws IOException {
    try (RocksIterator it = db.newIterator(lru);
        WriteBatch batch = new WriteBatch()) {
      for (it.seekToFirst(); it.isValid(); it.next()) {
        batch.delete(lru, it.key());
      }
      db.write(writeOptions, batch);
    } catch (RocksDBException e) {
      throw failed("write", e);
    }
  }

  // ------------------------------------------------------------------ imports

  Optional<Digest> importDigest(String tenant, String location, String tag) throws IOException {
    byte[] v = get(imports, importKey(tenant, location, tag));
    return v == null ? Optional.empty() : Optional.of(digest(v));
  }

  void putImport(String tenant, String location, String tag, Digest d) throws IOException {
    try {
      db.put(imports, writeOptions, importKey(tenant, location, tag), raw(d));
    } catch (RocksDBException e) {
      throw failed("write", e);
    }
  }

  // ------------------------------------------------------------------ remote write queue

  void enqueueUpload(Digest d, long enqueuedMillis) throws IOException {
    try {
      db.put(uploads, writeOptions, raw(d), ByteBuffer.allocate(8).putLong(enqueuedMillis).array());
    } catch (RocksDBException e) {
      throw failed("write", e);
    }
  }

  void removeUpload(Digest d) throws IOException {
    try {
      db.delete(uploads, writeOptions, raw(d));
    } catch (RocksDBException e) {
      throw failed("write", e);
    }
  }

  List<Digest> uploads() {
    List<Digest> out = new ArrayList<>();
    try (RocksIterator it = db.newIterator(uploads)) {
      for (it.seekToFirst(); it.isValid(); it.next()) {
        out.add(digest(it.key()));
      }
    }
    return out;
  }

  @Override
  public void close() {
    for (ColumnFamilyHandle h : handles) {
      h.close();
    }
    try {
      db.syncWal();
    } catch (RocksDBException e) {
      // Closing anyway; the WAL is replayed on the next open.
    }
    db.close();
    writeOptions.close();
    dbOptions.close();
    cfOptions.close();
  }

  // ------------------------------------------------------------------ encoding

  private byte[] get(ColumnFamilyHandle cf, byte[] key) throws IOException {
    try {
      return db.get(cf, key);
    } catch (RocksDBException e) {
      throw failed("read", e);
    }
  }

  private static IOException failed(String what, RocksDBException e) {
    return new IOException("cache index " + what + " failed: " + e.getMessage(), e);
  }

  static byte[] raw(Digest d) {
    return HEX.parseHex(d.hex());
  }

  static Digest digest(byte[] raw) {
    return new Digest(HEX.formatHex(raw));
  }

  private static byte[] lruKey(long seq, byte[] digest) {
    return ByteBuffer.allocate(40).putLong(seq).put(digest).array();
  }

  /** Length-prefixed parts, so no tenant, location or tag can run into the next one. */
  static byte[] importKey(String tenant, String location, String tag) {
    byte[][] parts = {bytes(tenant), bytes(location), bytes(tag)};
    int n = 0;
    for (byte[] p : parts) {
      n += 4 + p.length;
    }
    ByteBuffer b = ByteBuffer.allocate(n);
    for (byte[] p : parts) {
      b.putInt(p.length).put(p);
    }
    return b.array();
  }

  private static byte[] bytes(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }
}
