package dev.kiln.image;

import com.google.cloud.tools.jib.api.DescriptorDigest;
import com.google.cloud.tools.jib.api.buildplan.FileEntry;
import com.google.cloud.tools.jib.blob.Blob;
import com.google.cloud.tools.jib.blob.BlobDescriptor;
import com.google.cloud.tools.jib.image.ReproducibleLayerBuilder;
import com.google.common.collect.ImmutableList;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.UUID;
import java.util.zip.GZIPOutputStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Compresses file-backed layers at a chosen gzip level and stores them where Jib's application
 * layer cache looks for them, so that Jib finds them built instead of compressing them itself.
 *
 * <p>Why: Jib always compresses application layers with gzip's default level 6, and exposes no
 * setting for it. For big layers that is most of a cold build: numpy's 58 MB of files take about
 * 2.0 s of CPU at level 6 and 0.55 s at level 1 (18 MB instead of 15 MB), on a machine where the
 * image never leaves the local disk.
 *
 * <p>How: the layer tar is made by Jib's own {@link ReproducibleLayerBuilder}, so it is byte for
 * byte the tar Jib would make; only the compression differs. The cache entry is written the way Jib
 * writes it ({@code layers/<digest>/<diffId>}, then {@code selectors/<selector>} naming the digest,
 * each moved into place atomically), under the selector Jib computes for the same entries. That
 * selector comes from Jib's package-private {@code LayerEntriesSelector}, through reflection: if a
 * Jib version no longer has it, this class does nothing and Jib compresses the layers itself
 * (correct images, level 6, slower). At level 6 the result is exactly Jib's.
 */
final class LayerCompressor {
  private static final Logger log = LoggerFactory.getLogger(LayerCompressor.class);
  private static final Method SELECTOR = selectorMethod();

  private final Path cacheDir;
  private final int level;

  /**
   * @param cacheDir Jib's application layer cache directory
   * @param level gzip level, 0 (stored, fastest) to 9
   */
  LayerCompressor(Path cacheDir, int level) {
    if (level < 0 || level > 9) {
      throw new IllegalArgumentException("gzip level must be 0 to 9, got " + level);
    }
    this.cacheDir = cacheDir;
    this.level = level;
  }

  /** Whether this Jib lets layers be put into its cache; otherwise Jib compresses them. */
  static boolean available() {
    return SELECTOR != null;
  }

  /**
   * Makes sure Jib's cache holds the layer of these entries (exactly as they will be given to Jib).
   * Returns the selector file that finds it, or null, doing nothing, when the cache cannot be
   * filled from outside.
   */
  Path ensure(ImmutableList<FileEntry> entries) throws IOException {
    if (SELECTOR == null) {
      return null;
    }
    DescriptorDigest selector;
    try {
      selector = (DescriptorDigest) SELECTOR.invoke(null, entries);
    } catch (InvocationTargetException e) {
      if (e.getCause() instanceof IOException io) {
        throw io;
      }
      throw new IOException("computing Jib's layer selector failed", e.getCause());
    } catch (IllegalAccessException e) {
      return null;
    }
    Path selectorFile = cacheDir.resolve("selectors").resolve(selector.getHash());
    if (Files.exists(selectorFile)) {
      return selectorFile;
    }
    Path temp =
        Files.createDirectories(cacheDir.resolve("tmp")).resolve("kiln-" + UUID.randomUUID());
    Files.createDirectories(temp);
    try {
      Path file = temp.resolve("layer");
      MessageDigest compressed = sha256();
      Blob tar = new ReproducibleLayerBuilder(entries).build();
      BlobDescriptor uncompressed;
      try (OutputStream out =
              new DigestOutputStream(
                  new BufferedOutputStream(Files.newOutputStream(file), 1 << 16), compressed);
          GZIPOutputStream gzip = new Gzip(out, level)) {
        uncompressed = tar.writeTo(gzip); // hashes the tar on its way: the diff id
      }
      String digest = HexFormat.of().formatHex(compressed.digest());
      String diffId = uncompressed.getDigest().getHash();
      Files.move(file, temp.resolve(diffId));
      Path layerDir = cacheDir.resolve("layers").resolve(digest);
      Files.createDirectories(layerDir.getParent());
      moveIfAbsent(temp, layerDir);
      Path selectorTemp = cacheDir.resolve("tmp").resolve("kiln-" + UUID.randomUUID());
      Files.writeString(selectorTemp, digest, StandardCharsets.UTF_8);
      Files.createDirectories(selectorFile.getParent());
      moveIfAbsent(selectorTemp, selectorFile);
      Files.deleteIfExists(selectorTemp);
      return selectorFile;
    } finally {
      deleteQuietly(temp);
    }
  }

  private static void moveIfAbsent(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE);
    } catch (FileAlreadyExistsException e) {
      // Written concurrently by another build: the same content.
    } catch (AtomicMoveNotSupportedException e) {
      throw new IOException("Jib's cache " + to.getParent() + " must be on a local file system", e);
    } catch (IOException e) {
      if (!Files.exists(to)) {
        throw e;
      }
    }
  }

  private static void deleteQuietly(Path dir) {
    try (var files = Files.list(dir)) {
      for (Path p : files.toList()) {
        Files.deleteIfExists(p);
      }
      Files.deleteIfExists(dir);
    } catch (IOException e) {
      // Gone already (moved into the cache) or left for the next cleanup of Jib's tmp.
    }
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  private static Method selectorMethod() {
    try {
      Class<?> c = Class.forName("com.google.cloud.tools.jib.cache.LayerEntriesSelector");
      Method m = c.getDeclaredMethod("generateSelector", ImmutableList.class);
      m.setAccessible(true);
      if (m.getReturnType() != DescriptorDigest.class) {
        return null;
      }
      return m;
    } catch (ReflectiveOperationException | RuntimeException e) {
      log.info(
          "Jib's layer selector is not reachable ({}); Jib compresses layers itself at gzip level"
              + " 6",
          e.toString());
      return null;
    }
  }
}
