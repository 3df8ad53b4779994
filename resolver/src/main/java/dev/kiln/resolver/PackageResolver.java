package dev.kiln.resolver;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;

/**
 * Resolves requirements to a lock and downloads locked wheels. Thread-safe.
 *
 * <p>Locks are cached in memory and on disk, keyed by the normalised requirements, the index URLs
 * and the target's Python (version, ABI, platform). A set of requirements that are all exact pins
 * ({@code ==1.2.3}) always resolves from that cache once resolved, with no network at all. Other
 * locks are fresh for {@code unpinnedLockTtl}; after that the cached lock is still answered at once
 * (resolution sits on the ApplyUdfResource path, which must not wait for an index) while a
 * background resolution replaces it, so new releases are picked up by the next call, and an index
 * outage keeps the last lock. Core metadata is cached on disk by the wheel's sha256, so a wheel's
 * metadata is read once; wheels downloaded only to read their metadata (indexes without PEP 658)
 * are kept, verified, until {@link #download} hands them out (see {@link CachedIndex}, which also
 * reads ahead while one resolution walks the dependency tree).
 */
public final class PackageResolver implements AutoCloseable {
  private static final System.Logger LOG = System.getLogger(PackageResolver.class.getName());
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final int DEFAULT_MAX_ATTEMPTS = 2000;
  private static final Duration DEFAULT_TTL = Duration.ofMinutes(10);

  /** A lock and when it was resolved. */
  private record CachedLock(Lock lock, Instant created) {}

  private final IndexConfig index;
  private final CachedIndex files;
  private final Path locks;
  private final Duration unpinnedLockTtl;
  private final Clock clock;
  private final int maxAttempts;
  private final Map<String, CachedLock> lockCache = new ConcurrentHashMap<>();
  private final ExecutorService refresher;
  private final Set<String> refreshing = ConcurrentHashMap.newKeySet();
  private final Object[] stripes = new Object[64];

  /** cacheDir: lock cache + metadata cache (survives restarts). */
  public PackageResolver(IndexConfig index, Path cacheDir) throws IOException {
    this(index, cacheDir, DEFAULT_TTL, Clock.systemUTC());
  }

  /**
   * @param unpinnedLockTtl how long a lock of requirements that are not all exact pins is used
   *     before it is re-resolved in the background (also how long project pages are cached)
   * @param clock the time source of that expiry
   */
  public PackageResolver(IndexConfig index, Path cacheDir, Duration unpinnedLockTtl, Clock clock)
      throws IOException {
    this(index, cacheDir, unpinnedLockTtl, clock, DEFAULT_MAX_ATTEMPTS);
  }

  /** maxAttempts: how many package versions one resolution may try before it gives up. */
  PackageResolver(
      IndexConfig index, Path cacheDir, Duration unpinnedLockTtl, Clock clock, int maxAttempts)
      throws IOException {
    this.maxAttempts = maxAttempts;
    this.index = index;
    this.locks = Files.createDirectories(cacheDir.resolve("locks"));
    this.unpinnedLockTtl = unpinnedLockTtl;
    this.clock = clock;
    for (int i = 0; i < stripes.length; i++) {
      stripes[i] = new Object();
    }
    this.files = new CachedIndex(index, cacheDir, unpinnedLockTtl, clock);
    // Its own thread: a resolution waits for prefetches, so it must not occupy their pool.
    this.refresher =
        Executors.newSingleThreadExecutor(
            r -> {
              Thread t = new Thread(r, "kiln-resolver-refresh");
              t.setDaemon(true);
              return t;
            });
  }

  /**
   * Resolves requirements (PEP 508 strings) for the target Python to one wheel per project.
   * Requirements whose markers do not hold on the target are dropped; none left gives the empty
   * lock.
   *
   * @throws KilnException {@code INVALID_REQUIREMENT} when a requirement string is invalid (the
   *     message names it); {@code PACKAGE_NOT_FOUND}, {@code NO_COMPATIBLE_WHEEL}, {@code
   *     NO_MATCHING_VERSION}, {@code PACKAGE_CONFLICT} or {@code RESOLUTION_TOO_COMPLEX} when no
   *     lock exists (the message says why); {@code PACKAGE_INDEX_UNAVAILABLE} or {@code
   *     PACKAGE_HASH_MISMATCH} when an index answers wrongly
   * @throws IOException the index cannot be reached and no earlier lock exists
   */
  public Lock resolve(List<String> requirements, TargetEnvironment target)
      throws KilnException, IOException, InterruptedException {
    List<Requirement> parsed = new ArrayList<>();
    Map<String, String> env = target.markerEnvironment();
    boolean allPinned = true;
    for (String text : requirements) {
      Requirement r = Requirement.parse(text);
      if (r.appliesTo(env, Set.of())) {
        parsed.add(r);
        allPinned &= r.specifierSet().exactPin().isPresent();
      }
    }
    if (parsed.isEmpty()) {
      return Lock.empty();
    }
    String key = cacheKey(parsed, target);
    CachedLock cached = cachedLock(key);
    if (cached != null) {
      if (!allPinned && !fresh(cached)) {
        refreshInBackground(key, parsed, target);
      }
      return cached.lock();
    }
    synchronized (stripe(key)) {
      cached = cachedLock(key); // another thread may have resolved it meanwhile
      if (cached != null) {
        return cached.lock();
      }
      return resolveAndStore(key, parsed, target);
    }
  }

  private Object stripe(String key) {
    return stripes[Math.floorMod(key.hashCode(), stripes.length)];
  }

  private Lock resolveAndStore(String key, List<Requirement> parsed, TargetEnvironment target)
      throws KilnException, IOException, InterruptedException {
    Lock lock = resolveNow(parsed, target);
    storeLock(key, new CachedLock(lock, clock.instant()));
    files.dropUnlockedWheels(lock);
    return lock;
  }

  /** Re-resolves a stale lock once in the background; failures keep the old lock. */
  private void refreshInBackground(String key, List<Requirement> parsed, TargetEnvironment target) {
    if (!refreshing.add(key)) {
      return;
    }
    try {
      refresher.execute(
          () -> {
            try {
              synchronized (stripe(key)) {
                CachedLock current = cachedLock(key);
                if (current == null || !fresh(current)) {
                  resolveAndStore(key, parsed, target);
                }
              }
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            } catch (Exception e) {
              LOG.log(
                  System.Logger.Level.WARNING,
                  "re-resolving {0} failed, keeping the last lock: {1}",
                  parsed,
                  e.getMessage());
            } finally {
              refreshing.remove(key);
            }
          });
    } catch (RejectedExecutionException closed) {
      refreshing.remove(key);
    }
  }

  /**
   * Streams a locked wheel to {@code out}, checking its sha256. On a mismatch it throws, naming the
   * file; what was written by then must be discarded (it is not the locked wheel).
   */
  public void download(LockedPackage pkg, OutputStream out)
      throws KilnException, IOException, InterruptedException {
    files.download(pkg, out);
  }

  @Override
  public void close() {
    refresher.shutdownNow();
    files.close();
  }

  private Lock resolveNow(List<Requirement> requirements, TargetEnvironment target)
      throws KilnException, IOException, InterruptedException {
    List<Resolution.Resolved> resolved =
        new Resolution(files.provider(target), target, maxAttempts, index.redactedUrls())
            .resolve(requirements);
    List<LockedPackage> packages = new ArrayList<>();
    for (Resolution.Resolved r : resolved) {
      Candidate c = r.candidate();
      packages.add(
          new LockedPackage(
              c.name(), c.version().toString(), c.file().filename(), c.file().url(), r.sha256()));
    }
    return new Lock(packages);
  }

  private boolean fresh(CachedLock c) {
    return c.created().plus(unpinnedLockTtl).isAfter(clock.instant());
  }

  private CachedLock cachedLock(String key) throws IOException {
    CachedLock c = lockCache.get(key);
    if (c != null) {
      return c;
    }
    Path p = locks.resolve(key + ".json");
    if (!Files.isRegularFile(p)) {
      return null;
    }
    try {
      JsonNode root = JSON.readTree(p.toFile());
      List<LockedPackage> packages = new ArrayList<>();
      for (JsonNode n : root.path("packages")) {
        packages.add(
            new LockedPackage(
                n.get("name").asText(),
                n.get("version").asText(),
                n.get("filename").asText(),
                URI.create(n.get("url").asText()),
                n.get("sha256").asText()));
      }
      c = new CachedLock(new Lock(packages), Instant.parse(root.get("created").asText()));
    } catch (RuntimeException | IOException e) {
      // A damaged cache entry is resolved again, not an error.
      LOG.log(System.Logger.Level.WARNING, "ignoring unreadable lock cache entry {0}: {1}", p, e);
      return null;
    }
    lockCache.put(key, c);
    return c;
  }

  private void storeLock(String key, CachedLock c) throws IOException {
    ObjectNode root = JSON.createObjectNode();
    root.put("created", c.created().toString());
    ArrayNode arr = root.putArray("packages");
    for (LockedPackage p : c.lock().packages()) {
      ObjectNode n = arr.addObject();
      n.put("name", p.name());
      n.put("version", p.version());
      n.put("filename", p.filename());
      n.put("url", p.url().toString());
      n.put("sha256", p.sha256());
    }
    Path tmp = Files.createTempFile(locks, "lock-", ".part");
    try {
      JSON.writerWithDefaultPrettyPrinter().writeValue(tmp.toFile(), root);
      CacheFiles.moveAtomically(tmp, locks.resolve(key + ".json"));
    } finally {
      Files.deleteIfExists(tmp);
    }
    lockCache.put(key, c);
  }

  /**
   * The lock cache key: the requirements (canonical, sorted, de-duplicated), the index URLs and the
   * parts of the target that decide which wheels fit.
   */
  private String cacheKey(List<Requirement> requirements, TargetEnvironment t) {
    TreeSet<String> reqs = new TreeSet<>();
    requirements.forEach(r -> reqs.add(r.canonical()));
    StringBuilder sb = new StringBuilder("kiln-lock/v1\n");
    reqs.forEach(r -> sb.append(r).append('\n'));
    sb.append("--\n");
    index.redactedUrls().forEach(u -> sb.append(u).append('\n'));
    sb.append("--\n")
        .append(t.pythonVersion())
        .append('\n')
        .append(t.implementation())
        .append('\n')
        .append(t.soabi())
        .append('\n')
        .append(t.machine())
        .append('\n')
        .append(t.libc())
        .append(' ')
        .append(t.libcVersion())
        .append('\n');
    return CacheFiles.sha256(sb.toString().getBytes(StandardCharsets.UTF_8));
  }
}
