package dev.kiln.image;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.cache.Digest;
import dev.kiln.resolver.WheelFilename;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.security.MessageDigest;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.Collections;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns a wheel into the layer that installs it, following the wheel spec (PEP 427/491):
 * purelib/platlib into site-packages, {@code .data/{purelib,platlib,scripts,headers,data}}, {@code
 * RECORD} and {@code INSTALLER} in the {@code .dist-info}, {@code console_scripts} / {@code
 * gui_scripts} entry points as executable scripts with the layout's interpreter in the shebang. The
 * layer's content (and so its digest) depends only on the wheel bytes and the layout.
 *
 * <p>Each (wheel sha256, layout) becomes one layer blob, once: the wheel is verified against its
 * {@code RECORD} while its files stream from the zip into a tar (see {@link WheelInstall}), plain
 * unless {@link #setGzipLevel} asks for gzip, which is moved into place atomically as {@code
 * workDir/<wheel sha256>-<layout hash>.tar} ({@code .tar.gz}), next to a small file with its
 * digests. Later calls, also after a restart, return that blob without reading the wheel again
 * (beyond hashing it once per process); {@link ImageBuilder} puts it into images as it is, so every
 * image with the same package shares the layer, and an image that shares packages with an earlier
 * one only builds what is new.
 *
 * <p>Thread-safe; several processes may share a work directory.
 */
public final class WheelLayers {
  private static final Logger log = LoggerFactory.getLogger(WheelLayers.class);

  /**
   * Part of every layer's key: change it whenever the layer for a given wheel and layout changes,
   * so that old layers are not reused.
   */
  static final String FORMAT = "kiln-wheel-layer 4";

  private static final String TEMP_PREFIX = ".tmp-";
  private static final Duration STALE_TEMP = Duration.ofHours(1);

  private final Path workDir;
  private final Clock clock;
  private volatile int gzipLevel = ImageBuilder.UNCOMPRESSED;

  /** Recently used layers (a miss costs reading one small file). */
  private final Map<String, LayerBlob> layers = lru(4096);

  private final Map<FileStamp, String> wheelHashes = lru(4096);
  private final Object[] locks = new Object[64];
  private volatile boolean staleTempsRemoved;

  /** Layers are kept under {@code workDir} and reused across builds and restarts. */
  public WheelLayers(Path workDir) {
    this(workDir, Clock.systemUTC());
  }

  /**
   * clock: what temporary files are compared with; those a build left more than an hour before it
   * are taken for a crashed build's and removed.
   */
  WheelLayers(Path workDir, Clock clock) {
    this.workDir = workDir.toAbsolutePath().normalize();
    this.clock = clock;
    for (int i = 0; i < locks.length; i++) {
      locks[i] = new Object();
    }
  }

  /**
   * The gzip level (0 to 9) of layers made from now on, or {@link ImageBuilder#UNCOMPRESSED} (the
   * default) for plain tars. Compression only pays where an image leaves the machine; it is part of
   * a layer's key, so layers made otherwise are not reused.
   */
  public void setGzipLevel(int level) {
    if (level != ImageBuilder.UNCOMPRESSED && (level < 0 || level > 9)) {
      throw new IllegalArgumentException("gzip level must be between 0 and 9, got " + level);
    }
    this.gzipLevel = level;
  }

  /** Where layers are kept (byte-code layers too, see {@link PycLayers}). */
  Path workDir() {
    return workDir;
  }

  /** The gzip level of layers made now, or {@link ImageBuilder#UNCOMPRESSED}. */
  int gzipLevel() {
    return gzipLevel;
  }

  /**
   * The layer that installs {@code wheelFile} with {@code layout}, named {@code "wheel
   * <filename>"}, as a {@linkplain LayerSpec#ofBlob built layer}. The first call for a wheel and
   * layout builds and verifies it; later calls (also after a restart) reuse it.
   *
   * @param wheelFile the wheel's bytes; must stay unchanged (files are recognised by path, size and
   *     modification time, as in a content-addressed cache)
   * @param wheelFilename the wheel's file name, which says its distribution and tags
   * @throws KilnException {@link ErrorCode#PACKAGES_UNRESOLVABLE} when the wheel is malformed,
   *     damaged or tampered with (the message names the wheel and the problem)
   * @throws IOException when the wheel cannot be read or the work directory cannot be written
   */
  public LayerSpec layerFor(Path wheelFile, String wheelFilename, InstallLayout layout)
      throws KilnException, IOException {
    try {
      return layer(wheelFile, wheelFilename, layout);
    } catch (InvalidWheelException e) {
      throw new KilnException(ErrorCode.PACKAGES_UNRESOLVABLE, e.getMessage(), e);
    }
  }

  private LayerSpec layer(Path wheelFile, String wheelFilename, InstallLayout layout)
      throws KilnException, IOException {
    DiskLock.LOCK.readLock().lock();
    try {
      return layerLocked(wheelFile, wheelFilename, layout);
    } finally {
      DiskLock.LOCK.readLock().unlock();
    }
  }

  private LayerSpec layerLocked(Path wheelFile, String wheelFilename, InstallLayout layout)
      throws KilnException, IOException {
    WheelFilename name = WheelFilename.of(wheelFilename);
    int level = gzipLevel;
    String key = sha256(wheelFile) + "-" + layoutHash(layout, level);
    touch(workDir.resolve(key + ".layer"));
    LayerBlob blob = layers.get(key);
    if (blob == null) {
      // One build per layer at a time; different wheels mostly go on in parallel.
      synchronized (locks[Math.floorMod(key.hashCode(), locks.length)]) {
        blob = layers.get(key);
        if (blob == null) {
          blob = loadOrBuild(key, wheelFile, name, layout, level);
          layers.put(key, blob);
        }
      }
    }
    return LayerSpec.ofBlob("wheel " + wheelFilename, blob);
  }

  /** What {@link #collect} removed (or would remove). */
  public record Collected(int layers, long bytes) {}

  /**
   * Removes the wheel layers nobody used since {@code unusedBefore} (a cache: the images that hold
   * them have their own copy in the layout, and a build makes again what it misses). Waits for
   * builds under way. With {@code dryRun} nothing changes.
   */
  public Collected collect(Instant unusedBefore, boolean dryRun) throws IOException {
    DiskLock.LOCK.writeLock().lock();
    try {
      int n = 0;
      long bytes = 0;
      if (!Files.isDirectory(workDir)) {
        return new Collected(0, 0);
      }
      try (DirectoryStream<Path> infos = Files.newDirectoryStream(workDir, "*.layer")) {
        for (Path info : infos) {
          String name = info.getFileName().toString();
          if (name.startsWith(TEMP_PREFIX)
              || !Files.getLastModifiedTime(info).toInstant().isBefore(unusedBefore)) {
            continue;
          }
          String key = name.substring(0, name.length() - ".layer".length());
          List<Path> files = List.of(blobFile(key, 0), blobFile(key, ImageBuilder.UNCOMPRESSED));
          n++;
          for (Path file : files) {
            bytes += Files.exists(file) ? Files.size(file) : 0;
          }
          if (!dryRun) {
            layers.remove(key);
            // The file that vouches for the blob first: a reader never sees it without the blob.
            Files.deleteIfExists(info);
            for (Path file : files) {
              Files.deleteIfExists(file);
            }
          }
        }
      }
      return new Collected(n, bytes);
    } finally {
      DiskLock.LOCK.writeLock().unlock();
    }
  }

  /** Marks a layer as used now, for {@link #collect}. */
  private static void touch(Path info) {
    try {
      Files.setLastModifiedTime(info, FileTime.from(Instant.now()));
    } catch (IOException e) {
      // not there yet: it is built now
    }
  }

  private LayerBlob loadOrBuild(
      String key, Path wheelFile, WheelFilename name, InstallLayout layout, int level)
      throws IOException {
    Path file = blobFile(key, level);
    Path info = workDir.resolve(key + ".layer");
    if (Files.isRegularFile(info)) {
      try {
        return read(info, file);
      } catch (IOException e) {
        log.warn("layer of {} in {} is unusable ({}); building it again", name.filename(), info, e);
      }
    }
    Files.createDirectories(workDir);
    removeStaleTemps();
    long started = System.nanoTime();
    String temp = TEMP_PREFIX + key + "-" + UUID.randomUUID();
    Path tempFile = workDir.resolve(temp + ".tar");
    Path tempInfo = workDir.resolve(temp + ".layer");
    try {
      WheelInstall.Result r = WheelInstall.install(wheelFile, name, layout, tempFile, level);
      LayerBlob blob = new LayerBlob(file, r.digest(), r.diffId(), r.size());
      write(tempInfo, blob);
      // The blob first, then the file that vouches for it: a reader never sees one without the
      // other. A concurrent builder of the same layer writes the same bytes.
      move(tempFile, file);
      move(tempInfo, info);
      log.debug(
          "built the layer of {} ({} files, {} bytes) in {} ms",
          name.filename(),
          r.files(),
          r.size(),
          (System.nanoTime() - started) / 1_000_000);
      return blob;
    } finally {
      Files.deleteIfExists(tempFile);
      Files.deleteIfExists(tempInfo);
    }
  }

  /** The blob of the layer with this key, made at this gzip level. */
  private Path blobFile(String key, int gzipLevel) {
    return workDir.resolve(key + (gzipLevel == ImageBuilder.UNCOMPRESSED ? ".tar" : ".tar.gz"));
  }

  /** The file that vouches for a blob: the format, its digests, size and media type. */
  static void write(Path info, LayerBlob blob) throws IOException {
    Files.writeString(
        info,
        String.join(
                "\n",
                FORMAT,
                blob.digest().toString(),
                blob.diffId().toString(),
                "" + blob.size(),
                blob.mediaType())
            + "\n",
        StandardCharsets.UTF_8);
  }

  static LayerBlob read(Path info, Path file) throws IOException {
    List<String> lines = Files.readAllLines(info, StandardCharsets.UTF_8);
    if (lines.size() < 5 || !lines.get(0).equals(FORMAT)) {
      throw new IOException(info + " is not a " + FORMAT + " file");
    }
    long size = Long.parseLong(lines.get(3));
    if (!Files.isRegularFile(file) || Files.size(file) != size) {
      throw new IOException(file + " is missing or not " + size + " bytes");
    }
    try {
      return new LayerBlob(
          file, Digest.parse(lines.get(1)), Digest.parse(lines.get(2)), size, lines.get(4));
    } catch (IllegalArgumentException e) {
      throw new IOException(info + " does not describe a layer: " + e.getMessage(), e);
    }
  }

  private void move(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      throw new IOException(
          "cannot rename "
              + from
              + " to "
              + to
              + " atomically; the work directory "
              + workDir
              + " must be on a local file system",
          e);
    }
  }

  /** Files recognised by their identity and metadata; a wheel file is never changed in place. */
  private record FileStamp(Path path, Object fileKey, long size, FileTime modified) {}

  /** The wheel's sha256, hashed once per file (hashing numpy's 17 MB on every build would show). */
  private String sha256(Path wheelFile) throws IOException {
    BasicFileAttributes attrs;
    try {
      attrs = Files.readAttributes(wheelFile, BasicFileAttributes.class);
    } catch (NoSuchFileException e) {
      throw new NoSuchFileException(wheelFile.toString(), null, "the wheel file does not exist");
    }
    if (!attrs.isRegularFile()) {
      throw new IOException("wheel " + wheelFile + " is not a regular file");
    }
    FileStamp stamp =
        new FileStamp(
            wheelFile.toAbsolutePath().normalize(),
            attrs.fileKey(),
            attrs.size(),
            attrs.lastModifiedTime());
    String known = wheelHashes.get(stamp);
    if (known != null) {
      return known;
    }
    MessageDigest sha = WheelRecord.digest("sha256");
    byte[] buffer = new byte[1 << 16];
    try (InputStream in = Files.newInputStream(wheelFile)) {
      int n;
      while ((n = in.read(buffer)) > 0) {
        sha.update(buffer, 0, n);
      }
    }
    String hex = HexFormat.of().formatHex(sha.digest());
    wheelHashes.put(stamp, hex);
    return hex;
  }

  /** A short hash of the layout, the layer format and the compression (plain tar or gzip level). */
  static String layoutHash(InstallLayout layout, int gzipLevel) {
    String canonical =
        String.join(
            "\n",
            FORMAT,
            gzipLevel == ImageBuilder.UNCOMPRESSED ? "tar" : "gzip " + gzipLevel,
            layout.purelib(),
            layout.platlib(),
            layout.scripts(),
            layout.data(),
            layout.headers(),
            layout.interpreter());
    byte[] digest = WheelRecord.digest("sha256").digest(canonical.getBytes(StandardCharsets.UTF_8));
    return HexFormat.of().formatHex(digest, 0, 8);
  }

  private static <K, V> Map<K, V> lru(int capacity) {
    return Collections.synchronizedMap(
        new LinkedHashMap<>(16, 0.75f, true) {
          @Override
          protected boolean removeEldestEntry(Map.Entry<K, V> eldest) {
            return size() > capacity;
          }
        });
  }

  /** Removes temporary files that a crashed build left behind, once per instance. */
  private void removeStaleTemps() {
    if (staleTempsRemoved) {
      return;
    }
    staleTempsRemoved = true;
    Instant cutoff = clock.instant().minus(STALE_TEMP);
    try (Stream<Path> entries = Files.list(workDir)) {
      for (Path p : entries.toList()) {
        if (p.getFileName().toString().startsWith(TEMP_PREFIX)
            && Files.getLastModifiedTime(p).toInstant().isBefore(cutoff)) {
          Files.deleteIfExists(p);
        }
      }
    } catch (IOException e) {
      log.warn("could not clean temporary files in {}: {}", workDir, e.toString());
    }
  }
}
