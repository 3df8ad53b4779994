package dev.kiln.cache;

import dev.kiln.base.SingleFlight;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The tiered, content-addressed cache: memory → local (RocksDB index + files) → remote (S3).
 *
 * <p><b>Reads</b> go through the tiers fastest first and promote what they find: a blob fetched
 * from the remote tier lands in the local tier, a small blob read through {@link #bytes} lands in
 * memory. Every read from disk or the remote tier is verified against the digest (see {@link
 * LocalTier} for how the local tier avoids hashing a large file on every hit); a corrupt copy is
 * discarded and the next tier asked. Concurrent reads of a blob that is not local fetch it once
 * (single flight per digest).
 *
 * <p><b>Writes</b> ({@link #put}) hash while writing to the local tier, move the file into place
 * atomically, and queue the remote write durably; they return without waiting for the remote tier,
 * and keep working while it is down ({@link RemoteWriter}).
 *
 * <p><b>Remote outages</b> cost the request path one failed call: after it the remote tier is
 * skipped by reads until the background writer's probe finds it back ({@link RemoteHealth}), and
 * reads that miss locally report a miss instead of waiting for timeouts.
 *
 * <p>One process opens a cache directory at a time (RocksDB holds a lock on its index).
 */
public final class ArtifactCache implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ArtifactCache.class);

  private final CacheConfig config;
  private final MeterRegistry registry;
  private final CacheIndex index;
  private final MemoryTier memory;
  private final LocalTier local;
  private final S3Tier remote;
  private final RemoteHealth health;
  private final RemoteWriter writer;
  private final ImportFetcher imports;
  private final ImportIdentities identities;
  private final SingleFlight<Digest, Optional<Path>> fetches = SingleFlight.forgetting();
  private final List<Meter> meters = new ArrayList<>();
  private boolean closed;

  private ArtifactCache(
      CacheConfig config,
      MeterRegistry registry,
      Tuning tuning,
      CacheIndex index,
      LocalTier local,
      S3Tier remote) {
    this.config = config;
    this.registry = registry;
    this.index = index;
    this.local = local;
    this.remote = remote;
    this.memory = new MemoryTier(config.memoryMaxBytes(), config.memoryMaxBlobBytes(), registry);
    this.health = new RemoteHealth(tuning.remoteBackoffMin(), tuning.remoteBackoffMax());
    this.writer = remote == null ? null : new RemoteWriter(index, local, remote, health);
    if (writer != null) {
      local.pin(writer::isQueued);
    }
    this.imports = new ImportFetcher(this, index, local, tuning, registry);
    this.identities = ImportIdentities.open(imports.http(), tuning);
    meters.add(
        Gauge.builder("kiln.cache.remote.queue", this, c -> c.remoteQueueDepth())
            .description("Blobs waiting to be written to the remote cache tier")
            .register(registry));
  }

  /** Opens (or creates) the cache under {@code config.localDir()}. */
  public static ArtifactCache open(CacheConfig config, MeterRegistry meters) throws IOException {
    return open(config, meters, Tuning.DEFAULT);
  }

  static ArtifactCache open(CacheConfig config, MeterRegistry meters, Tuning tuning)
      throws IOException {
    Path dir = config.localDir().toAbsolutePath();
    Files.createDirectories(dir);
    CacheIndex index = CacheIndex.open(dir.resolve("index"));
    LocalTier local = null;
    S3Tier remote = null;
    try {
      local = new LocalTier(dir, index, config.localMaxBytes(), meters);
      if (config.remote().isPresent()) {
        remote = new S3Tier(config.remote().get(), dir.resolve("tmp"), tuning, meters);
      }
      ArtifactCache cache = new ArtifactCache(config, meters, tuning, index, local, remote);
      log.info(
          "artifact cache at {}: {} local blobs ({}), remote {}, {} queued remote writes",
          dir,
          local.entries(),
          CacheStats.bytes(local.sizeBytes()),
          config.remote().map(Object::toString).orElse("none"),
          cache.remoteQueueDepth());
      return cache;
    } catch (IOException | RuntimeException e) {
      if (remote != null) {
        remote.close();
        remote.meters().unregister(meters);
      }
      if (local != null) {
        local.meters().unregister(meters);
      }
      index.close();
      throw e;
    }
  }

  public CacheConfig config() {
    return config;
  }

  /**
   * A local file with the verified blob, fetched from the fastest tier that has it and promoted;
   * empty when no tier has it. Callers must not modify the file, and should open it soon: a blob
   * that stops being used may be evicted (the one just returned is the last candidate).
   */
  public Optional<Path> file(Digest digest) throws IOException, InterruptedException {
    long t0 = System.nanoTime();
    Optional<LocalTier.Hit> hit = local.hit(digest);
    if (hit.isPresent()) {
      local.meters().hit(t0, hit.get().size());
      return Optional.of(hit.get().path());
    }
    local.meters().miss();
    return fetches.run(digest, () -> fetchIntoLocal(digest));
  }

  /**
   * The blob's bytes (a copy the caller owns), from memory when it is there; blobs up to {@code
   * memoryMaxBlobBytes} are kept in memory for the next read. Meant for small blobs (metadata,
   * index pages); large ones belong in {@link #file}.
   */
  public Optional<byte[]> bytes(Digest digest) throws IOException, InterruptedException {
    long t0 = System.nanoTime();
    Optional<byte[]> m = memory.get(digest);
    if (m.isPresent()) {
      byte[] copy = m.get().clone();
      memory.meters().hit(t0, copy.length);
      return Optional.of(copy);
    }
    memory.meters().miss();
    Optional<Path> p = file(digest);
    if (p.isEmpty()) {
      return Optional.empty();
    }
    long size = Files.size(p.get());
    if (size > Integer.MAX_VALUE - 64) {
      throw new IOException(
          "blob " + digest + " has " + size + " bytes, too many for one array; use file()");
    }
    byte[] b = Files.readAllBytes(p.get());
    memory.keep(digest, b.clone());
    return Optional.of(b);
  }

  /** Fetches a blob the local tier does not have from memory or the remote tier, into local. */
  private Optional<Path> fetchIntoLocal(Digest d) throws IOException {
    // The previous flight for this digest may have finished between our miss and now.
    Optional<Path> done = local.file(d);
    if (done.isPresent()) {
      return done;
    }
    long t0 = System.nanoTime();
    Optional<byte[]> m = memory.get(d);
    if (m.isPresent()) {
      local.write(d, new ByteArrayInputStream(m.get()));
      memory.meters().hit(t0, m.get().length);
      return local.file(d);
    }
    if (remote == null) {
      return Optional.empty();
    }
    if (!health.up()) {
      remote.meters().miss();
      return Optional.empty();
    }
    Path temp = local.newTempFile();
    try {
      long n;
      try {
        n = remote.download(d, temp);
        health.succeeded();
      } catch (LocalDiskException e) {
        throw e; // our disk, not the remote tier
      } catch (CorruptBlobException e) {
        health.succeeded();
        remote.meters().miss();
        log.warn("{}; treating it as a miss", e.getMessage());
        return Optional.empty();
      } catch (IOException e) {
        remote.meters().miss();
        remoteFailed(e);
        return Optional.empty();
      }
      if (n < 0) {
        remote.meters().miss();
        return Optional.empty();
      }
      local.adopt(d, temp, n);
      remote.meters().hit(t0, n);
      return local.file(d);
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  private void remoteFailed(IOException e) {
    if (health.failed() == 1) {
      log.warn(
          "remote cache tier unavailable; serving from local tiers meanwhile: {}", e.getMessage());
    }
  }

  /** True when any tier has the blob (the remote tier is asked with a HEAD request). */
  public boolean contains(Digest digest) throws IOException {
    if (memory.contains(digest) || local.contains(digest)) {
      return true;
    }
    if (remote == null || !health.up()) {
      return false;
    }
    try {
      boolean found = remote.contains(digest);
      health.succeeded();
      return found;
    } catch (IOException e) {
      remoteFailed(e);
      return false;
    }
  }

  /**
   * Stores a stream (hashing while writing, atomic), queues the remote write; returns its digest.
   */
  public Digest put(InputStream content) throws IOException {
    Digest d = local.write(null, content);
    enqueueRemote(d);
    return d;
  }

  /**
   * Stores a stream that must hash to {@code expected}; throws {@link CorruptBlobException} (and
   * stores nothing) when it does not.
   */
  public void put(Digest expected, InputStream content) throws IOException {
    local.write(expected, content);
    enqueueRemote(expected);
  }

  void enqueueRemote(Digest d) throws IOException {
    if (writer != null) {
      writer.enqueue(d);
    }
  }

  /** Fetches staged imports through presigned URLs into this cache. */
  public ImportFetcher imports() {
    return imports;
  }

  /**
   * The content identities of staged imports that come without a tag (Databend's CreateWorker),
   * asked through the same HTTP client as {@link #imports()}.
   */
  public ImportIdentities identities() {
    return identities;
  }

  /** Blobs waiting to be written to the remote tier. */
  public long remoteQueueDepth() {
    return writer == null ? 0 : writer.depth();
  }

  /** A snapshot of the counters, for {@code kiln cache stats}. */
  public CacheStats stats() {
    List<TierStats> tiers = new ArrayList<>();
    tiers.add(memory.meters().stats(memory.entries(), memory.sizeBytes()));
    tiers.add(local.meters().stats(local.entries(), local.sizeBytes()));
    if (remote != null) {
      tiers.add(remote.meters().stats(-1, -1));
    }
    return new CacheStats(
        tiers, remoteQueueDepth(), imports.downloads(), imports.downloadsAvoided());
  }

  /**
   * Waits until every queued remote write is done (for tests and an orderly shutdown); returns
   * false when the timeout passed first. The queue is durable, so a shutdown that does not wait
   * loses nothing: the next open resumes it.
   */
  public boolean awaitRemoteWrites(Duration timeout) throws InterruptedException {
    return writer == null || writer.awaitEmpty(timeout);
  }

  /** Stops the remote writer (its queue stays in the index) and closes every tier. */
  @Override
  public synchronized void close() {
    if (closed) {
      return;
    }
    closed = true;
    if (writer != null) {
      writer.close();
    }
    identities.close();
    imports.close();
    if (remote != null) {
      remote.close();
      remote.meters().unregister(registry);
    }
    memory.close();
    memory.meters().unregister(registry);
    local.close();
    local.meters().unregister(registry);
    imports.unregister(registry);
    meters.forEach(registry::remove);
    index.close();
  }
}
