package dev.kiln.resolver;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

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
 * are kept, verified, until {@link #download} hands them out.
 *
 * <p>While one resolution walks the dependency tree, the project pages and the likely metadata of
 * the requirements it has just met are fetched in parallel on a small pool.
 */
public final class PackageResolver implements AutoCloseable {
  private static final System.Logger LOG = System.getLogger(PackageResolver.class.getName());
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern DIST_INFO_METADATA = Pattern.compile("[^/]+\\.dist-info/METADATA");
  private static final int DEFAULT_MAX_ATTEMPTS = 2000;
  private static final long MAX_METADATA_BYTES = 16 << 20;
  private static final Duration DEFAULT_TTL = Duration.ofMinutes(10);
  // Index round trips and wheel downloads overlap this much while one resolution walks the tree.
  private static final int PREFETCH_THREADS = 4;

  /** A lock and when it was resolved. */
  private record CachedLock(Lock lock, Instant created) {}

  /** A project page (null: no index has the project) and when it was fetched. */
  private record CachedPage(ProjectPage page, Instant fetched) {}

  private final IndexConfig index;
  private final IndexClient client;
  private final Path locks;
  private final Path metadataDir;
  private final Path wheels;
  private final Duration unpinnedLockTtl;
  private final Clock clock;
  private final int maxAttempts;
  private final Map<String, CachedLock> lockCache = new ConcurrentHashMap<>();
  private final Map<String, CachedPage> pageCache = new ConcurrentHashMap<>();
  private final Map<String, CoreMetadata> metadataCache = new ConcurrentHashMap<>();
  private final Map<String, CompletableFuture<ProjectPage>> pagesInFlight =
      new ConcurrentHashMap<>();
  private final Map<URI, CompletableFuture<Resolution.Metadata>> metadataInFlight =
      new ConcurrentHashMap<>();
  private final ExecutorService prefetcher;
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
    this.client = new IndexClient(index);
    this.locks = Files.createDirectories(cacheDir.resolve("locks"));
    this.metadataDir = Files.createDirectories(cacheDir.resolve("metadata"));
    this.wheels = Files.createDirectories(cacheDir.resolve("wheels"));
    this.unpinnedLockTtl = unpinnedLockTtl;
    this.clock = clock;
    for (int i = 0; i < stripes.length; i++) {
      stripes[i] = new Object();
    }
    AtomicInteger threads = new AtomicInteger();
    this.prefetcher =
        Executors.newFixedThreadPool(
            PREFETCH_THREADS,
            r -> {
              Thread t = new Thread(r, "kiln-resolver-prefetch-" + threads.incrementAndGet());
              t.setDaemon(true);
              return t;
            });
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
    dropUnlockedWheels(lock);
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
   * Deletes wheels that were downloaded only to read their metadata (now cached) and that this lock
   * does not use, e.g. a newest version fetched ahead that backtracking passed over. A concurrent
   * resolution that wanted one of them downloads it again; nothing breaks.
   */
  private void dropUnlockedWheels(Lock lock) {
    Set<String> used = new java.util.HashSet<>();
    lock.packages().forEach(p -> used.add(p.sha256()));
    try (java.util.stream.Stream<Path> dirs = Files.list(wheels)) {
      for (Path dir : dirs.toList()) {
        String sha = dir.getFileName().toString();
        if (Files.isDirectory(dir) && !used.contains(sha) && metadataCache.containsKey(sha)) {
          try (java.util.stream.Stream<Path> files = Files.list(dir)) {
            for (Path f : files.toList()) {
              Files.deleteIfExists(f);
            }
          }
          Files.deleteIfExists(dir);
        }
      }
    } catch (IOException e) {
      // Best effort: a wheel left behind only costs disk space until the next resolution.
      LOG.log(System.Logger.Level.DEBUG, "could not prune kept wheels: {0}", e.toString());
    }
  }

  /**
   * Streams a locked wheel to {@code out}, checking its sha256. On a mismatch it throws, naming the
   * file; what was written by then must be discarded (it is not the locked wheel).
   */
  public void download(LockedPackage pkg, OutputStream out)
      throws KilnException, IOException, InterruptedException {
    Path cached = wheels.resolve(pkg.sha256()).resolve(pkg.filename());
    InputStream kept = null;
    try {
      kept = Files.newInputStream(cached);
    } catch (java.nio.file.NoSuchFileException notKept) {
      // not downloaded during resolution (or handed out already): fetch it below
    }
    if (kept != null) {
      String actual;
      try (InputStream in = kept) {
        actual = copyHashing(in, out);
      }
      if (actual.equals(pkg.sha256())) {
        // The caller keeps it by its hash now; a second copy here would only use disk.
        Files.deleteIfExists(cached);
        Files.deleteIfExists(cached.getParent());
        return;
      }
      Files.deleteIfExists(cached);
      throw mismatch(pkg.filename(), cached.toUri(), pkg.sha256(), actual);
    }
    String actual;
    try (InputStream in = client.open(pkg.url())) {
      actual = copyHashing(in, out);
    }
    if (!actual.equals(pkg.sha256())) {
      throw mismatch(pkg.filename(), pkg.url(), pkg.sha256(), actual);
    }
  }

  @Override
  public void close() {
    refresher.shutdownNow();
    prefetcher.shutdownNow();
    client.close();
  }

  private Lock resolveNow(List<Requirement> requirements, TargetEnvironment target)
      throws KilnException, IOException, InterruptedException {
    Map<String, Integer> rank = new HashMap<>();
    List<String> tags = target.compatibleTags();
    for (int i = 0; i < tags.size(); i++) {
      rank.put(tags.get(i), i);
    }
    Version python = Version.tryParse(target.pythonVersion());
    Resolution.Provider provider =
        new Resolution.Provider() {
          @Override
          public ProjectInfo project(String name)
              throws KilnException, IOException, InterruptedException {
            ProjectPage page = page(name);
            return page == null ? ProjectInfo.notFound(name) : ProjectInfo.of(page, rank, python);
          }

          @Override
          public Resolution.Metadata metadata(Candidate c)
              throws KilnException, IOException, InterruptedException {
            return PackageResolver.this.metadata(c.file());
          }

          @Override
          public void prefetch(List<Requirement> requirements) {
            for (Requirement r : requirements) {
              prefetchPage(r.name())
                  .thenAccept(
                      page -> {
                        if (page != null) {
                          prefetchLikelyMetadata(
                              ProjectInfo.of(page, rank, python), r.specifierSet());
                        }
                      });
            }
          }
        };
    List<Resolution.Resolved> resolved =
        new Resolution(provider, target, maxAttempts, index.redactedUrls()).resolve(requirements);
    List<LockedPackage> packages = new ArrayList<>();
    for (Resolution.Resolved r : resolved) {
      Candidate c = r.candidate();
      packages.add(
          new LockedPackage(
              c.name(), c.version().toString(), c.file().filename(), c.file().url(), r.sha256()));
    }
    return new Lock(packages);
  }

  private ProjectPage page(String name) throws KilnException, IOException, InterruptedException {
    CachedPage c = pageCache.get(name);
    if (isFresh(c)) {
      return c.page();
    }
    return joinOrRead(pagesInFlight, name, () -> fetchPage(name));
  }

  /** A read the resolution needs now (a page or metadata), for {@link #joinOrRead}. */
  private interface Read<V> {
    V call() throws KilnException, IOException, InterruptedException;
  }

  /**
   * Joins the read of {@code key} already on its way (a prefetch), or reads it on this thread,
   * registered in {@code inFlight} meanwhile so that a prefetch starting late joins it instead of
   * downloading the same thing again. A failed prefetch is read again here, which reports the
   * failure with its own exception.
   */
  private static <K, V> V joinOrRead(Map<K, CompletableFuture<V>> inFlight, K key, Read<V> read)
      throws KilnException, IOException, InterruptedException {
    CompletableFuture<V> mine = new CompletableFuture<>();
    CompletableFuture<V> theirs = inFlight.putIfAbsent(key, mine);
    if (theirs != null) {
      try {
        return theirs.get();
      } catch (ExecutionException failed) {
        return read.call();
      } finally {
        inFlight.remove(key, theirs);
      }
    }
    try {
      V v = read.call();
      mine.complete(v);
      return v;
    } catch (Throwable t) {
      mine.completeExceptionally(t);
      throw t;
    } finally {
      inFlight.remove(key, mine);
    }
  }

  private boolean isFresh(CachedPage c) {
    return c != null && c.fetched().plus(unpinnedLockTtl).isAfter(clock.instant());
  }

  private ProjectPage fetchPage(String name)
      throws KilnException, IOException, InterruptedException {
    ProjectPage page = client.project(name).orElse(null);
    pageCache.put(name, new CachedPage(page, clock.instant()));
    return page;
  }

  /** Starts fetching a project page in the background unless it is cached or on its way. */
  private CompletableFuture<ProjectPage> prefetchPage(String name) {
    CachedPage c = pageCache.get(name);
    if (isFresh(c)) {
      return CompletableFuture.completedFuture(c.page());
    }
    try {
      // Checked again inside: the page may have been fetched (and its entry removed) since.
      CompletableFuture<ProjectPage> f =
          pagesInFlight.computeIfAbsent(
              name,
              n ->
                  isFresh(pageCache.get(n))
                      ? null
                      : CompletableFuture.supplyAsync(
                          () -> unchecked(() -> fetchPage(n)), prefetcher));
      return f != null ? f : CompletableFuture.completedFuture(pageCache.get(name).page());
    } catch (RejectedExecutionException closed) {
      return CompletableFuture.completedFuture(null);
    }
  }

  /**
   * Starts reading the metadata of the version a requirement will most likely get (the newest final
   * release that matches it), so the resolver rarely waits for a download.
   */
  private void prefetchLikelyMetadata(ProjectInfo info, SpecifierSet spec) {
    for (ProjectInfo.Release r : info.releases()) {
      if (r.best() == null || !spec.contains(r.version(), false)) {
        continue;
      }
      DistFile f = r.best();
      if (f.sha256() != null && metadataCache.containsKey(f.sha256())) {
        return;
      }
      try {
        // Checked again inside: it may have been read (and its entry removed) since.
        metadataInFlight.computeIfAbsent(
            f.url(),
            u ->
                f.sha256() != null && metadataCache.containsKey(f.sha256())
                    ? null
                    : CompletableFuture.supplyAsync(
                        () -> unchecked(() -> fetchMetadata(f)), prefetcher));
      } catch (RejectedExecutionException closed) {
        // closing: nothing to prefetch for
      }
      return;
    }
  }

  /** A checked-exception call, for the background fetches (their failures are retried inline). */
  private interface Fetch<T> {
    T call() throws Exception;
  }

  private static <T> T unchecked(Fetch<T> f) {
    try {
      return f.call();
    } catch (Exception e) {
      throw new CompletionException(e);
    }
  }

  /**
   * A wheel's core metadata and sha256: from the cache, from its PEP 658 metadata file, or read
   * from the (verified) wheel itself.
   */
  private Resolution.Metadata metadata(DistFile file)
      throws KilnException, IOException, InterruptedException {
    return joinOrRead(metadataInFlight, file.url(), () -> fetchMetadata(file));
  }

  private Resolution.Metadata fetchMetadata(DistFile file)
      throws KilnException, IOException, InterruptedException {
    String sha = file.sha256();
    if (sha != null) {
      CoreMetadata known = cachedMetadata(sha);
      if (known != null) {
        return new Resolution.Metadata(known, sha);
      }
      if (file.hasMetadata()) {
        URI url = URI.create(file.url() + ".metadata");
        byte[] bytes;
        try (InputStream in = client.open(url)) {
          bytes = in.readNBytes((int) MAX_METADATA_BYTES);
        }
        if (file.metadataSha256() != null && !sha256(bytes).equals(file.metadataSha256())) {
          throw mismatch(file.filename() + ".metadata", url, file.metadataSha256(), sha256(bytes));
        }
        CoreMetadata md = storeMetadata(sha, bytes);
        return new Resolution.Metadata(md, sha);
      }
    }
    Path wheel;
    String actual;
    if ("file".equalsIgnoreCase(file.url().getScheme())) {
      wheel = Path.of(file.url()); // read in place; hashing it first is what verifies it
      try (InputStream in = Files.newInputStream(wheel)) {
        actual = copyHashing(in, OutputStream.nullOutputStream());
      } catch (java.nio.file.NoSuchFileException e) {
        throw new IOException("the index lists " + file.url() + " but the file does not exist", e);
      }
      if (sha != null && !actual.equals(sha)) {
        throw mismatch(file.filename(), file.url(), sha, actual);
      }
    } else {
      actual = sha;
      wheel = sha == null ? null : wheels.resolve(sha).resolve(file.filename());
      if (wheel == null || !Files.isRegularFile(wheel)) {
        Path tmp = Files.createTempFile(wheels, "download-", ".part");
        try {
          try (InputStream in = client.open(file.url());
              OutputStream out = Files.newOutputStream(tmp)) {
            actual = copyHashing(in, out);
          }
          if (sha != null && !actual.equals(sha)) {
            throw mismatch(file.filename(), file.url(), sha, actual);
          }
          wheel = Files.createDirectories(wheels.resolve(actual)).resolve(file.filename());
          moveAtomically(tmp, wheel);
        } finally {
          Files.deleteIfExists(tmp);
        }
      }
    }
    CoreMetadata known = cachedMetadata(actual);
    if (known != null) {
      return new Resolution.Metadata(known, actual);
    }
    return new Resolution.Metadata(storeMetadata(actual, readMetadata(wheel, file)), actual);
  }

  private static byte[] readMetadata(Path wheel, DistFile file) throws IOException, KilnException {
    WheelFilename name = WheelFilename.parse(file.filename());
    try (ZipFile zip = new ZipFile(wheel.toFile())) {
      List<ZipEntry> found = new ArrayList<>();
      for (Enumeration<? extends ZipEntry> e = zip.entries(); e.hasMoreElements(); ) {
        ZipEntry z = e.nextElement();
        if (DIST_INFO_METADATA.matcher(z.getName()).matches()) {
          found.add(z);
        }
      }
      ZipEntry chosen = found.size() == 1 ? found.get(0) : null;
      for (ZipEntry z : found) {
        String dir = z.getName().substring(0, z.getName().indexOf(".dist-info/"));
        int dash = dir.lastIndexOf('-');
        if (name != null
            && dash > 0
            && Requirement.normalizeName(dir.substring(0, dash)).equals(name.name())) {
          chosen = z;
        }
      }
      if (chosen == null) {
        throw new KilnException(
            ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
            file.filename()
                + " from "
                + file.url()
                + " is not a valid wheel: it has no single"
                + " *.dist-info/METADATA");
      }
      try (InputStream in = zip.getInputStream(chosen)) {
        return in.readNBytes((int) MAX_METADATA_BYTES);
      }
    } catch (java.util.zip.ZipException e) {
      throw new KilnException(
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          file.filename()
              + " from "
              + file.url()
              + " is not a valid wheel (zip): "
              + e.getMessage());
    }
  }

  private CoreMetadata cachedMetadata(String sha) throws IOException {
    CoreMetadata m = metadataCache.get(sha);
    if (m != null) {
      return m;
    }
    Path p = metadataDir.resolve(sha + ".METADATA");
    if (!Files.isRegularFile(p)) {
      return null;
    }
    m = CoreMetadata.parse(Files.readString(p, StandardCharsets.UTF_8));
    metadataCache.put(sha, m);
    return m;
  }

  private CoreMetadata storeMetadata(String sha, byte[] bytes) throws IOException {
    CoreMetadata m = CoreMetadata.parse(new String(bytes, StandardCharsets.UTF_8));
    Path tmp = Files.createTempFile(metadataDir, "metadata-", ".part");
    try {
      Files.write(tmp, bytes);
      moveAtomically(tmp, metadataDir.resolve(sha + ".METADATA"));
    } finally {
      Files.deleteIfExists(tmp);
    }
    metadataCache.put(sha, m);
    return m;
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
      moveAtomically(tmp, locks.resolve(key + ".json"));
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
    return sha256(sb.toString().getBytes(StandardCharsets.UTF_8));
  }

  private static String copyHashing(InputStream in, OutputStream out) throws IOException {
    MessageDigest md = newSha256();
    byte[] buf = new byte[1 << 16];
    int n;
    while ((n = in.read(buf)) > 0) {
      md.update(buf, 0, n);
      out.write(buf, 0, n);
    }
    return HexFormat.of().formatHex(md.digest());
  }

  private static KilnException mismatch(String filename, URI url, String expected, String actual) {
    return new KilnException(
        ErrorCode.PACKAGE_HASH_MISMATCH,
        "sha256 mismatch for "
            + filename
            + " from "
            + IndexClient.withoutUserInfo(url)
            + ": expected "
            + expected
            + ", got "
            + actual
            + "; the file is not the one the index"
            + " (or the lock) promises, so it is not used");
  }

  private static void moveAtomically(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
    }
  }

  static String sha256(byte[] bytes) {
    return HexFormat.of().formatHex(newSha256().digest(bytes));
  }

  private static MessageDigest newSha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every JDK has SHA-256", e);
    }
  }
}
