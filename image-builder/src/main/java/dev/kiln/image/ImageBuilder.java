package dev.kiln.image;

import com.google.cloud.tools.jib.api.CacheDirectoryCreationException;
import com.google.cloud.tools.jib.api.Containerizer;
import com.google.cloud.tools.jib.api.DockerDaemonImage;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.api.JibContainerBuilder;
import com.google.cloud.tools.jib.api.LogEvent;
import com.google.cloud.tools.jib.api.RegistryException;
import com.google.cloud.tools.jib.api.buildplan.AbsoluteUnixPath;
import com.google.cloud.tools.jib.api.buildplan.FileEntriesLayer;
import com.google.cloud.tools.jib.api.buildplan.FileEntry;
import com.google.cloud.tools.jib.api.buildplan.FilePermissions;
import com.google.cloud.tools.jib.api.buildplan.ImageFormat;
import com.google.common.collect.ImmutableList;
import com.google.common.io.MoreFiles;
import com.google.common.io.RecursiveDeleteOption;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.cache.CorruptBlobException;
import dev.kiln.cache.Digest;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Builds images with Jib Core, without a Docker daemon, over one base image, into a local OCI image
 * layout ({@code workDir/oci}) where they are kept by name.
 *
 * <p>A build hands Jib one {@link FileEntriesLayer} per {@link LayerSpec} and lets it containerize
 * to a "Docker daemon" ({@link LayoutDockerClient}) that streams Jib's OCI image tarball straight
 * into the layout: blobs already there (the base layers, shared package layers) are skipped as they
 * stream past, new ones are written once, atomically, verified against their digest. No tarball is
 * stored, which keeps a warm build of an image with big package layers cheap.
 *
 * <p>The work directory holds {@code oci/} (the layout), {@code jib/} (Jib's base and application
 * layer caches), {@code tmp/} (per-build scratch, deleted after each build) and {@code oci.lock}.
 * An archive base reaches Jib through {@link ArchiveDockerClient}, so it is unpacked into Jib's
 * cache once per work directory, not on every build; a registry base is pinned to its digest, so
 * after the first pull warm builds need no registry ({@link JibBase} gets the base and puts Jib's
 * and the registry's failures in words). Layers from unchanged {@code source} files are compressed
 * once (Jib's application cache keys them by path and modification time), by {@link
 * LayerCompressor} at {@link #setGzipLevel gzip level 1} unless told otherwise, in parallel, and
 * ahead of the build when a caller {@linkplain #prepare prepares} them; in-memory files are staged
 * per build and their layers rebuilt by Jib, which costs little for small files.
 *
 * <p>Builds are reproducible: Jib stamps every layer entry and the image with fixed times and sorts
 * layer entries by path; this class sorts environment and labels and uses a fixed tool name. The
 * same base and request give the same manifest digest in any work directory.
 *
 * <p>Thread-safe: builds may run concurrently; index.json updates are serialised.
 */
public final class ImageBuilder implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ImageBuilder.class);

  /** Part of every image's history, and so of its digest: change it only with the image format. */
  static final String TOOL_NAME = "kiln-image-builder";

  static final String TOOL_VERSION = "1";

  /** What Jib compresses application layers with (java.util.zip's default); not configurable. */
  static final int JIB_GZIP_LEVEL = 6;

  /**
   * The gzip level of layers that are compressed, unless {@link #setGzipLevel} says otherwise:
   * images live on local disk, where level 1 costs a third of the CPU for 15-20% more bytes.
   */
  public static final int DEFAULT_GZIP_LEVEL = 1;

  /**
   * A "gzip level" that means no compression at all: package layers are plain tars ({@link
   * LayerBlob#TAR}) unless {@link WheelLayers#setGzipLevel} asks for gzip. Kiln keeps images in a
   * local layout that the local provisioner reads, which would only decompress again what was
   * compressed; a push to a registry ({@link RegistryPush}) compresses them on the way.
   */
  public static final int UNCOMPRESSED = -1;

  /** Jib's name for the image it hands over; the layout's name comes from the request. */
  private static final ImageReference TARGET_NAME =
      ImageReference.of(null, "kiln/build", "tarball", null);

  private final BaseImage base;
  private final JibBase jibBase;
  private final OciLayout layout;
  private final Path baseLayersCache;
  private final Path applicationLayersCache;
  private final Path scratchRoot;
  private final ExecutorService executor;
  private final ExecutorService compressors;
  private volatile int gzipLevel = DEFAULT_GZIP_LEVEL;

  /**
   * Layers compressed into Jib's cache, by their files, with the selector file that finds them: a
   * warm build then skips hashing thousands of file entries twice (Kiln's and Jib's). Files of such
   * layers never change in place (a changed file would only cost a Jib-compressed layer).
   */
  private final Map<List<LayerFile>, Path> prepared =
      Collections.synchronizedMap(
          new LinkedHashMap<>(16, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<List<LayerFile>, Path> eldest) {
              return size() > 1024; // recently used layers; a miss costs one selector computation
            }
          });

  /**
   * Opens (creating when needed) the layout and Jib's caches under {@code workDir}. Does not touch
   * the base image: a missing archive or an unreachable registry is reported by {@link #build}.
   */
  public ImageBuilder(BaseImage base, Path workDir) throws IOException {
    this.base = Objects.requireNonNull(base, "base");
    Files.createDirectories(workDir);
    Path dir = workDir.toRealPath();
    this.jibBase = new JibBase(base, dir);
    this.layout = new OciLayout(dir.resolve("oci"));
    this.baseLayersCache = Files.createDirectories(dir.resolve("jib/base"));
    this.applicationLayersCache = Files.createDirectories(dir.resolve("jib/application"));
    this.scratchRoot = Files.createDirectories(dir.resolve("tmp"));
    this.executor = Executors.newCachedThreadPool(daemonThreads());
    // CPU-bound: one compression per core; more would only interleave them.
    this.compressors =
        Executors.newFixedThreadPool(Runtime.getRuntime().availableProcessors(), daemonThreads());
  }

  /**
   * Lets the base image be pulled, and its digest and labels looked up, over plain http or
   * unverified https. Registries on loopback always may; use this for other trusted registries.
   */
  public void setAllowInsecureRegistries(boolean allow) {
    base.allowInsecureRegistry(allow);
  }

  /**
   * The gzip level (0 to 9) of layers whose files outlive the build, such as imported files: lower
   * is faster, higher is smaller. 6 leaves compression to Jib. Layers already built are not
   * recompressed (their digests stay), so set this before the first build of a work directory.
   */
  public void setGzipLevel(int level) {
    if (level < 0 || level > 9) {
      throw new IllegalArgumentException("gzip level must be between 0 and 9, got " + level);
    }
    this.gzipLevel = level;
  }

  public BaseImage base() {
    return base;
  }

  /** The OCI image layout directory: {@code oci-layout}, {@code index.json}, {@code blobs/}. */
  public Path layoutDir() {
    return layout.dir();
  }

  /** The file of an image's config in the layout (a registry push sends it with the layers). */
  public Path configBlob(BuiltImage image) {
    return layout.blob(image.configDigest());
  }

  /**
   * Builds the image and records it in the layout under {@code request.name()}, replacing an image
   * of the same name. A {@link LayerSpec} without files adds no layer (Jib skips it). Layer names
   * end up in the image history, so they are part of the digest. {@linkplain LayerSpec#ofBlob Built
   * layers} (packages) must come first: they go right over the base image, as they are, and Jib
   * builds the layers of files over them.
   *
   * @throws KilnException when the base image is missing or unreachable, a layer source file cannot
   *     be read, or Jib fails; the message says what to do
   */
  public BuiltImage build(ImageRequest request) throws KilnException, InterruptedException {
    DiskLock.LOCK.readLock().lock();
    try {
      return buildLocked(request);
    } finally {
      DiskLock.LOCK.readLock().unlock();
    }
  }

  private BuiltImage buildLocked(ImageRequest request) throws KilnException, InterruptedException {
    long started = System.nanoTime();
    checkLayers(request);
    Path scratch;
    try {
      scratch = Files.createTempDirectory(scratchRoot, "build-");
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "cannot create a scratch directory under "
              + scratchRoot
              + ": "
              + e.getMessage()
              + "; check that the work directory is writable and the disk is not full",
          e);
    }
    try {
      // Built layers (packages) sit right over the base; Jib builds the rest over the base and
      // they are put in between afterwards.
      List<LayerSpec> built = request.layers().stream().takeWhile(l -> l.blob() != null).toList();
      List<LayerSpec> rest = request.layers().subList(built.size(), request.layers().size());
      ImageRequest jibRequest =
          built.isEmpty()
              ? request
              : new ImageRequest(
                  request.name(),
                  rest,
                  request.entrypoint(),
                  request.cmd(),
                  request.env(),
                  request.workingDir(),
                  request.labels());
      prepareAll(jibRequest);
      List<FileEntriesLayer> layers = layers(jibRequest, scratch);
      JibContainerBuilder jib = configure(jibBase.from(), jibRequest, layers);
      long configured = System.nanoTime();
      LayoutDockerClient target = new LayoutDockerClient(layout, scratch);
      containerize(jib, target, request.name());
      Digest manifest = target.loaded();
      if (manifest == null) {
        throw new IOException("Jib finished without handing over the image");
      }
      if (!built.isEmpty()) {
        int jibLayers = (int) rest.stream().filter(l -> !l.files().isEmpty()).count();
        manifest = insertBuiltLayers(manifest, jibLayers, built);
      }
      BuiltImage image = layout.commit(request.name(), manifest);
      if (log.isDebugEnabled()) {
        log.debug(
            "built {} ({}) in {} ms: prepare {} ms, jib and layout {} ms",
            request.name(),
            image.manifestDigest(),
            (System.nanoTime() - started) / 1_000_000,
            (configured - started) / 1_000_000,
            (System.nanoTime() - configured) / 1_000_000);
      }
      return image;
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "storing image "
              + request.name()
              + " in "
              + layout.dir()
              + " failed: "
              + e.getMessage()
              + "; check the disk, or delete the layout directory to start afresh",
          e);
    } finally {
      deleteQuietly(scratch);
    }
  }

  private Digest insertBuiltLayers(Digest manifest, int jibLayers, List<LayerSpec> built)
      throws KilnException, IOException {
    try {
      return layout.insertLayers(manifest, jibLayers, built);
    } catch (NoSuchFileException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "a package layer's file "
              + e.getFile()
              + " is gone; it must stay in place until the build is done (rebuild the layer)",
          e);
    } catch (CorruptBlobException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "a package layer's file does not match its digest ("
              + e.getMessage()
              + "); delete it so that it is built again",
          e);
    }
  }

  /** An image already in the layout, by name (a restarted server reuses what it built before). */
  public Optional<BuiltImage> find(String name) throws IOException {
    DiskLock.LOCK.readLock().lock();
    try {
      return layout.find(name);
    } finally {
      DiskLock.LOCK.readLock().unlock();
    }
  }

  /** What {@link #collect} removed (or would remove): images by name, files and bytes. */
  public record Collected(List<String> images, int files, long bytes) {}

  /**
   * Removes the images whose name starts with {@code prefix} that {@code keep} does not name and
   * that nobody built or looked up since {@code unusedBefore}, the layout's blobs no other image
   * references, and Jib's cached application layers not written since then (a cache: a build makes
   * again what it misses). Waits for builds under way; builds wait for it. With {@code dryRun}
   * nothing changes.
   */
  public Collected collect(
      String prefix,
      java.util.function.Predicate<String> keep,
      Instant unusedBefore,
      boolean dryRun)
      throws IOException {
    DiskLock.LOCK.writeLock().lock();
    try {
      OciLayout.Collected c = layout.collect(prefix, keep, unusedBefore, dryRun);
      int files = c.blobs();
      long bytes = c.bytes();
      JibCache.Collected jib = JibCache.collect(applicationLayersCache, unusedBefore, dryRun);
      files += jib.entries();
      bytes += jib.bytes();
      if (!dryRun) {
        prepared.clear();
      }
      return new Collected(c.images(), files, bytes);
    } finally {
      DiskLock.LOCK.writeLock().unlock();
    }
  }

  @Override
  public void close() {
    executor.shutdownNow();
    compressors.shutdownNow();
  }

  /** Jib's layers for the request, in order; in-memory files are staged under scratch. */
  private static List<FileEntriesLayer> layers(ImageRequest request, Path scratch)
      throws KilnException {
    Path staging = scratch.resolve("files");
    int[] staged = new int[1];
    List<FileEntriesLayer> layers = new ArrayList<>();
    for (LayerSpec spec : request.layers()) {
      layers.add(entries(spec, staging, staged));
    }
    return layers;
  }

  /**
   * The Jib layer of one spec: entries sorted by path, with their modes and Jib's fixed time.
   * In-memory files are staged under {@code staging} (numbered by {@code staged}).
   */
  private static FileEntriesLayer entries(LayerSpec spec, Path staging, int[] staged)
      throws KilnException {
    FileEntriesLayer.Builder layer = FileEntriesLayer.builder().setName(spec.name());
    List<LayerFile> files =
        spec.files().stream().sorted(Comparator.comparing(LayerFile::pathInImage)).toList();
    for (LayerFile file : files) {
      Path source = file.source();
      if (source == null) {
        // Jib reads layer content from files; small in-memory files are staged once per build.
        source = staging.resolve(Integer.toString(staged[0]++));
        try {
          Files.createDirectories(staging);
          Files.write(source, file.content());
        } catch (IOException e) {
          throw new KilnException(
              ErrorCode.IMAGE_BUILD_FAILED,
              "cannot stage "
                  + file.pathInImage()
                  + " for layer "
                  + spec.name()
                  + " under "
                  + staging
                  + ": "
                  + e.getMessage()
                  + "; check the disk",
              e);
        }
      } else if (!Files.isRegularFile(source)) {
        throw new KilnException(
            ErrorCode.IMAGE_BUILD_FAILED,
            "layer "
                + spec.name()
                + ": source file "
                + source
                + " for "
                + file.pathInImage()
                + " does not exist or is not a regular file; it must stay in place until the"
                + " build is done");
      }
      layer.addEntry(
          new FileEntry(
              source,
              AbsoluteUnixPath.get(file.pathInImage()),
              FilePermissions.fromOctalString(String.format("%03o", file.mode())),
              FileEntriesLayer.DEFAULT_MODIFICATION_TIME));
    }
    return layer.build();
  }

  /**
   * Compresses a layer of files that outlive the build (such as big imported files) into the build
   * cache now, at {@link #setGzipLevel the gzip level}, so that builds using it find it ready. Lets
   * a caller overlap this CPU-bound step with other work (downloads, wheel layers); {@link #build}
   * does it for layers not prepared. Does nothing for built layers, layers with in-memory files,
   * layers already prepared, and at level 6 (Jib compresses then). Thread-safe.
   *
   * @throws KilnException when a source file cannot be read or the cache not written
   */
  public void prepare(LayerSpec layer) throws KilnException {
    if (layer.files().isEmpty()
        || layer.files().stream().anyMatch(f -> f.source() == null)
        || gzipLevel == JIB_GZIP_LEVEL
        || !LayerCompressor.available()) {
      return;
    }
    List<LayerFile> key = layer.files();
    Path known = prepared.get(key);
    if (known != null && Files.exists(known)) {
      return;
    }
    try {
      FileEntriesLayer entries = entries(layer, null, new int[1]);
      Path selector =
          new LayerCompressor(applicationLayersCache, gzipLevel)
              .ensure(ImmutableList.copyOf(entries.getEntries()));
      if (selector != null) {
        prepared.put(key, selector);
      }
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "compressing layer "
              + layer.name()
              + " into "
              + applicationLayersCache
              + " failed: "
              + e.getMessage()
              + "; check that its files are readable and the disk is not full",
          e);
    }
  }

  /** Prepares the request's file layers in parallel (one per core), before Jib runs. */
  private void prepareAll(ImageRequest request) throws KilnException, InterruptedException {
    List<Future<?>> pending = new ArrayList<>();
    for (LayerSpec spec : request.layers()) {
      pending.add(
          compressors.submit(
              () -> {
                prepare(spec);
                return null;
              }));
    }
    for (Future<?> f : pending) {
      try {
        f.get();
      } catch (ExecutionException e) {
        if (e.getCause() instanceof KilnException b) {
          throw b;
        }
        throw new KilnException(
            ErrorCode.IMAGE_BUILD_FAILED,
            "preparing a layer failed: " + e.getCause(),
            e.getCause());
      }
    }
  }

  private static JibContainerBuilder configure(
      JibContainerBuilder jib, ImageRequest request, List<FileEntriesLayer> layers) {
    layers.forEach(jib::addFileEntriesLayer);
    return jib.setFormat(ImageFormat.OCI)
        .setCreationTime(Instant.EPOCH)
        // An empty entrypoint keeps the base image's; an empty cmd means none (or the base's,
        // when the entrypoint is kept too).
        .setEntrypoint(request.entrypoint().isEmpty() ? null : request.entrypoint())
        .setProgramArguments(request.cmd().isEmpty() ? null : request.cmd())
        // Given in a fixed order: Jib copies them into a HashMap whose iteration order, which
        // becomes the order in the config and so part of its digest, depends on insertion order.
        .setEnvironment(new TreeMap<>(request.env()))
        .setLabels(new TreeMap<>(request.labels()))
        .setWorkingDirectory(AbsoluteUnixPath.get(request.workingDir()));
  }

  private void containerize(JibContainerBuilder jib, LayoutDockerClient target, String name)
      throws KilnException, InterruptedException {
    Containerizer containerizer =
        Containerizer.to(target, DockerDaemonImage.named(TARGET_NAME))
            .setBaseImageLayersCache(baseLayersCache)
            .setApplicationLayersCache(applicationLayersCache)
            .setExecutorService(executor)
            .setAllowInsecureRegistries(base.insecure())
            .setToolName(TOOL_NAME)
            .setToolVersion(TOOL_VERSION)
            .addEventHandler(LogEvent.class, ImageBuilder::logJib);
    try {
      jib.containerize(containerizer);
    } catch (InterruptedException e) {
      throw e;
    } catch (ExecutionException e) {
      Throwable cause = e.getCause() == null ? e : e.getCause();
      if (cause instanceof InterruptedException interrupted) {
        throw interrupted;
      }
      throw jibBase.failure(name, cause);
    } catch (RegistryException
        | IOException
        | CacheDirectoryCreationException
        | RuntimeException e) {
      throw jibBase.failure(name, e);
    }
  }

  /** Rejects requests that are the caller's mistake, before any work is done. */
  private static void checkLayers(ImageRequest request) {
    if (request.name().isBlank()) {
      throw new IllegalArgumentException(
          "image name is blank; name the image, e.g. kiln/udf:<key>");
    }
    LayerSpec lastFileLayer = null;
    for (LayerSpec spec : request.layers()) {
      if (spec.blob() == null) {
        lastFileLayer = spec;
      } else if (lastFileLayer != null) {
        throw new IllegalArgumentException(
            "built layer "
                + spec.name()
                + " comes after layer "
                + lastFileLayer.name()
                + "; put built (package) layers first, right over the base image");
      }
      Set<String> paths = new HashSet<>();
      for (LayerFile file : spec.files()) {
        if (!paths.add(file.pathInImage())) {
          throw new IllegalArgumentException(
              "layer "
                  + spec.name()
                  + " has "
                  + file.pathInImage()
                  + " twice; give each path once");
        }
        if (file.mode() < 0 || file.mode() > 0777) {
          throw new IllegalArgumentException(
              "layer "
                  + spec.name()
                  + ": mode "
                  + Integer.toOctalString(file.mode())
                  + " of "
                  + file.pathInImage()
                  + " is not a permission mode between 0 and 0777");
        }
      }
    }
  }

  private static void logJib(LogEvent event) {
    if (event.getMessage().startsWith("Cannot verify server at")
        || event.getMessage().endsWith("Attempting again with HTTP.")) {
      // Jib falls back to http only for registries allowed to be insecure: expected, not a warning.
      log.debug("jib: {}", event.getMessage());
      return;
    }
    switch (event.getLevel()) {
      case ERROR, WARN -> log.warn("jib: {}", event.getMessage());
      case LIFECYCLE, INFO -> log.debug("jib: {}", event.getMessage());
      default -> log.trace("jib: {}", event.getMessage());
    }
  }

  private static void deleteQuietly(Path dir) {
    try {
      MoreFiles.deleteRecursively(dir, RecursiveDeleteOption.ALLOW_INSECURE);
    } catch (IOException e) {
      log.warn("could not delete scratch directory {}: {}", dir, e.toString());
    }
  }

  private static ThreadFactory daemonThreads() {
    AtomicInteger n = new AtomicInteger();
    return r -> {
      Thread t = new Thread(r, "kiln-jib-" + n.incrementAndGet());
      t.setDaemon(true);
      return t;
    };
  }
}
