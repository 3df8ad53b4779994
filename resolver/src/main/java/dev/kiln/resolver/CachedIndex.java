package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.base.SingleFlight;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

/**
 * The package index as one resolution sees it: project pages (cached for a while), core metadata
 * (cached on disk by the wheel's sha256, so a wheel's metadata is read once) and wheels (kept,
 * verified, when they were downloaded only to read their metadata, until {@link #download} hands
 * them out). While a resolution walks the dependency tree, the pages and the likely metadata of the
 * requirements it has just met are read ahead on a small pool; each page or metadata file is read
 * once at a time ({@link SingleFlight}), by a prefetch or by the resolving thread, whichever comes
 * first. Thread-safe.
 */
final class CachedIndex implements AutoCloseable {
  private static final System.Logger LOG = System.getLogger(CachedIndex.class.getName());
  private static final Pattern DIST_INFO_METADATA = Pattern.compile("[^/]+\\.dist-info/METADATA");
  private static final long MAX_METADATA_BYTES = 16 << 20;
  // Index round trips and wheel downloads overlap this much while one resolution walks the tree.
  private static final int PREFETCH_THREADS = 4;

  /** A project page (null: no index has the project) and when it was fetched. */
  private record CachedPage(ProjectPage page, Instant fetched) {}

  private final IndexClient client;
  private final Path metadataDir;
  private final Path wheels;
  private final Duration pageTtl;
  private final Clock clock;
  private final Map<String, CachedPage> pageCache = new ConcurrentHashMap<>();
  private final Map<String, CoreMetadata> metadataCache = new ConcurrentHashMap<>();

  /**
   * Page reads under way, by project. The resolving thread reads through it too, so that a prefetch
   * that starts meanwhile waits for that read, and one that starts after it finds the page cached.
   */
  private final SingleFlight<String, ProjectPage> pages = SingleFlight.forgetting();

  /**
   * Metadata reads, by file (URL and stated sha256), kept: a file's metadata does not change, and a
   * wheel read for its metadata (one without a stated sha256 included) is not downloaded again.
   */
  private final SingleFlight<DistFile, Resolution.Metadata> metadata = SingleFlight.remembering();

  private final ExecutorService prefetcher;

  /**
   * @param cacheDir where metadata ({@code metadata/}) and kept wheels ({@code wheels/}) are cached
   * @param pageTtl how long a project page is used before it is fetched again
   * @param clock the time source of that expiry
   */
  CachedIndex(IndexConfig index, Path cacheDir, Duration pageTtl, Clock clock) throws IOException {
    this.client = new IndexClient(index);
    this.metadataDir = Files.createDirectories(cacheDir.resolve("metadata"));
    this.wheels = Files.createDirectories(cacheDir.resolve("wheels"));
    this.pageTtl = pageTtl;
    this.clock = clock;
    AtomicInteger threads = new AtomicInteger();
    this.prefetcher =
        Executors.newFixedThreadPool(
            PREFETCH_THREADS,
            r -> {
              Thread t = new Thread(r, "kiln-resolver-prefetch-" + threads.incrementAndGet());
              t.setDaemon(true);
              return t;
            });
  }

  /** Where a resolution for {@code target} reads projects and metadata. */
  Resolution.Provider provider(TargetEnvironment target) {
    Map<String, Integer> rank = new HashMap<>();
    List<String> tags = target.compatibleTags();
    for (int i = 0; i < tags.size(); i++) {
      rank.put(tags.get(i), i);
    }
    Version python = Version.tryParse(target.pythonVersion());
    return new Resolution.Provider() {
      @Override
      public ProjectInfo project(String name)
          throws KilnException, IOException, InterruptedException {
        ProjectPage page = page(name);
        return page == null ? ProjectInfo.notFound(name) : ProjectInfo.of(page, rank, python);
      }

      @Override
      public Resolution.Metadata metadata(Candidate c)
          throws KilnException, IOException, InterruptedException {
        return CachedIndex.this.metadata(c.file());
      }

      @Override
      public void prefetch(List<Requirement> requirements) {
        for (Requirement r : requirements) {
          prefetchPage(r.name())
              .thenAccept(
                  page -> {
                    if (page != null) {
                      prefetchLikelyMetadata(ProjectInfo.of(page, rank, python), r.specifierSet());
                    }
                  });
        }
      }
    };
  }

  /**
   * Deletes wheels that were downloaded only to read their metadata (now cached) and that this lock
   * does not use, e.g. a newest version fetched ahead that backtracking passed over. A concurrent
   * resolution that wanted one of them downloads it again; nothing breaks.
   */
  void dropUnlockedWheels(Lock lock) {
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
  void download(LockedPackage pkg, OutputStream out)
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
        actual = CacheFiles.copyHashing(in, out);
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
      actual = CacheFiles.copyHashing(in, out);
    }
    if (!actual.equals(pkg.sha256())) {
      throw mismatch(pkg.filename(), pkg.url(), pkg.sha256(), actual);
    }
  }

  @Override
  public void close() {
    prefetcher.shutdownNow();
    client.close();
  }

  private ProjectPage page(String name) throws KilnException, IOException, InterruptedException {
    CachedPage c = pageCache.get(name);
    if (isFresh(c)) {
      return c.page();
    }
    return read(pages, name, () -> freshPage(name));
  }

  /**
   * A page or metadata read: it fails with the resolver's error, or when the index cannot be read.
   */
  private interface Read<V> {
    V call() throws KilnException, IOException, InterruptedException;
  }

  /** {@link SingleFlight#run}, passing on exactly the exceptions the read throws. */
  private static <K, V> V read(SingleFlight<K, V> flights, K key, Read<V> read)
      throws KilnException, IOException, InterruptedException {
    try {
      return flights.run(key, read::call);
    } catch (KilnException | IOException | InterruptedException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new IllegalStateException("a read threw what it does not declare", e);
    }
  }

  private boolean isFresh(CachedPage c) {
    return c != null && c.fetched().plus(pageTtl).isAfter(clock.instant());
  }

  /**
   * The cached page while it is fresh, else the index's (and cached). Checked again inside a flight
   * because the page may have been fetched, and its flight ended, since the caller looked.
   */
  private ProjectPage freshPage(String name)
      throws KilnException, IOException, InterruptedException {
    CachedPage c = pageCache.get(name);
    if (isFresh(c)) {
      return c.page();
    }
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
      return pages.start(name, () -> freshPage(name), prefetcher);
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
        metadata.start(f, () -> fetchMetadata(f), prefetcher);
      } catch (RejectedExecutionException closed) {
        // closing: nothing to prefetch for
      }
      return;
    }
  }

  /**
   * A wheel's core metadata and sha256: from the cache, from its PEP 658 metadata file, or read
   * from the (verified) wheel itself.
   */
  private Resolution.Metadata metadata(DistFile file)
      throws KilnException, IOException, InterruptedException {
    return read(metadata, file, () -> fetchMetadata(file));
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
        if (file.metadataSha256() != null
            && !CacheFiles.sha256(bytes).equals(file.metadataSha256())) {
          throw mismatch(
              file.filename() + ".metadata", url, file.metadataSha256(), CacheFiles.sha256(bytes));
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
        actual = CacheFiles.copyHashing(in, OutputStream.nullOutputStream());
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
            actual = CacheFiles.copyHashing(in, out);
          }
          if (sha != null && !actual.equals(sha)) {
            throw mismatch(file.filename(), file.url(), sha, actual);
          }
          wheel = Files.createDirectories(wheels.resolve(actual)).resolve(file.filename());
          CacheFiles.moveAtomically(tmp, wheel);
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
      CacheFiles.moveAtomically(tmp, metadataDir.resolve(sha + ".METADATA"));
    } finally {
      Files.deleteIfExists(tmp);
    }
    metadataCache.put(sha, m);
    return m;
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
}
