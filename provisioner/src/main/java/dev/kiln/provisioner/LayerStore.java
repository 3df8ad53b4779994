package dev.kiln.provisioner;

import dev.kiln.base.SingleFlight;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Extracted image layers, one directory per layer blob: {@code <dir>/<hex>}.
 *
 * <p>A layer is extracted by GNU tar (it gets owners, device files, hard links and xattrs right)
 * into a temporary directory, its whiteouts are converted for overlayfs, and the directory is
 * renamed into place: a {@code <hex>} directory is always complete. Concurrent requests for the
 * same layer share one extraction (single flight); a failed extraction is forgotten so the next
 * request tries again.
 */
final class LayerStore {
  private static final Logger log = LoggerFactory.getLogger(LayerStore.class);
  private static final Pattern DIGEST = Pattern.compile("sha256:([0-9a-f]{64})");
  static final String TEMP_PREFIX = ".tmp-";

  private final Path dir;
  private final String tar;
  private final SingleFlight<String, Path> extracting = SingleFlight.forgetting();
  private final AtomicInteger extractions = new AtomicInteger();

  LayerStore(Path dir, String tar) throws IOException {
    this.dir = Files.createDirectories(dir);
    this.tar = tar;
  }

  Path dir() {
    return dir;
  }

  /** How many layers this store has extracted since it was made. */
  int extractions() {
    return extractions.get();
  }

  /** Removes half-extracted layers that a crashed process left behind. */
  void removeTemporaries() throws IOException {
    try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir, TEMP_PREFIX + "*")) {
      for (Path p : entries) {
        FileTree.delete(p);
      }
    }
  }

  /** Layers {@link #collect} removed (or would remove) and their bytes. */
  record Collected(int layers, long bytes) {}

  /**
   * Removes the extracted layers not in {@code keep} (hex digests) and not used since {@code
   * unusedBefore}. Each goes by a rename to a temporary name first, so a crash half-way leaves a
   * temporary directory ({@link #removeTemporaries}), never a layer that looks complete but is not.
   */
  Collected collect(Set<String> keep, Instant unusedBefore, boolean dryRun) throws IOException {
    int n = 0;
    long bytes = 0;
    try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir)) {
      for (Path p : entries) {
        String name = p.getFileName().toString();
        if (name.startsWith(TEMP_PREFIX)
            || keep.contains(name)
            || !Files.isDirectory(p)
            || !Files.getLastModifiedTime(p).toInstant().isBefore(unusedBefore)) {
          continue;
        }
        n++;
        try (Stream<Path> walk = Files.walk(p)) {
          bytes += walk.filter(Files::isRegularFile).mapToLong(f -> f.toFile().length()).sum();
        }
        if (!dryRun) {
          Path doomed = dir.resolve(TEMP_PREFIX + "gc-" + name);
          Files.move(p, doomed, StandardCopyOption.ATOMIC_MOVE);
          FileTree.delete(doomed);
        }
      }
    }
    return new Collected(n, bytes);
  }

  /** Marks a layer as used now, for {@link #collect}. */
  private static void touch(Path layerDir) {
    try {
      Files.setLastModifiedTime(layerDir, FileTime.from(Instant.now()));
    } catch (IOException e) {
      // collected meanwhile: extracted again on the next use
    }
  }

  /** The extracted directories of {@code layers}, in the same order, extracting missing ones. */
  List<Path> extractAll(List<SandboxImage.Layer> layers) throws IOException, InterruptedException {
    List<CompletableFuture<Path>> futures = new ArrayList<>();
    for (SandboxImage.Layer layer : layers) {
      futures.add(extractAsync(layer));
    }
    List<Path> dirs = new ArrayList<>();
    for (CompletableFuture<Path> f : futures) {
      try {
        dirs.add(f.get());
      } catch (ExecutionException e) {
        if (e.getCause() instanceof IOException io) {
          throw new IOException(io.getMessage(), io);
        }
        throw new IOException("extracting an image layer failed: " + e.getCause(), e.getCause());
      }
    }
    return dirs;
  }

  private CompletableFuture<Path> extractAsync(SandboxImage.Layer layer) {
    String hex = hex(layer.digest());
    Path target = dir.resolve(hex);
    if (Files.isDirectory(target)) {
      touch(target);
      return CompletableFuture.completedFuture(target);
    }
    // Each layer on its own thread so the layers of one image extract in parallel; one extraction
    // per layer, which an interrupted caller does not abandon for the others waiting on it.
    CompletableFuture<Path> done = new CompletableFuture<>();
    Thread.ofVirtual()
        .name("kiln-layer-" + hex.substring(0, 12))
        .start(
            () -> {
              try {
                done.complete(extracting.run(hex, () -> extract(layer, hex, target)));
              } catch (Throwable t) {
                done.completeExceptionally(t);
              }
            });
    return done;
  }

  private Path extract(SandboxImage.Layer layer, String hex, Path target) throws IOException {
    if (Files.isDirectory(target)) {
      return target;
    }
    if (!Files.isRegularFile(layer.blob())) {
      throw new IOException(
          "layer "
              + layer.digest()
              + ": blob file "
              + layer.blob()
              + " does not exist; the image's layers must be stored locally before a sandbox"
              + " starts");
    }
    long t0 = System.nanoTime();
    Path temp = dir.resolve(TEMP_PREFIX + hex.substring(0, 16) + "-" + UUID.randomUUID());
    Files.createDirectory(temp);
    try {
      List<String> argv = new ArrayList<>();
      argv.add(tar);
      argv.add("-x");
      argv.addAll(compressionFlags(layer));
      argv.addAll(
          List.of(
              "-f",
              layer.blob().toAbsolutePath().toString(),
              "-C",
              temp.toString(),
              "--numeric-owner",
              "--same-owner",
              "--same-permissions",
              "--xattrs",
              "--xattrs-include=*",
              // Overlay's own attributes in a layer could redirect lookups: only Kiln sets them.
              "--xattrs-exclude=trusted.*"));
      HostCommand r = HostCommand.run(argv, Duration.ofMinutes(10));
      if (!r.ok()) {
        throw new IOException(
            "extracting layer "
                + layer.digest()
                + " from "
                + layer.blob()
                + " failed (tar exit "
                + r.exitCode()
                + "): "
                + r.diagnostics());
      }
      Whiteouts.Markers markers = Whiteouts.convert(temp, tar);
      try {
        Files.move(temp, target, StandardCopyOption.ATOMIC_MOVE);
      } catch (FileAlreadyExistsException | java.nio.file.DirectoryNotEmptyException e) {
        // Another process extracted it first; its copy is as good as ours.
        FileTree.delete(temp);
      } catch (AtomicMoveNotSupportedException e) {
        throw new IOException("cannot rename " + temp + " to " + target + " atomically", e);
      }
      extractions.incrementAndGet();
      log.info(
          "extracted layer {} in {} ms ({} whiteouts, {} opaque dirs)",
          layer.digest(),
          (System.nanoTime() - t0) / 1_000_000,
          markers.deleted().size(),
          markers.opaqueDirs().size());
      return target;
    } catch (IOException | RuntimeException e) {
      try {
        FileTree.delete(temp);
      } catch (IOException suppressed) {
        e.addSuppressed(suppressed);
      }
      throw e;
    }
  }

  /** Chooses tar's decompression from the blob's first bytes, which cannot disagree with it. */
  static List<String> compressionFlags(SandboxImage.Layer layer) throws IOException {
    byte[] magic = new byte[4];
    int n;
    try (InputStream in = Files.newInputStream(layer.blob())) {
      n = in.readNBytes(magic, 0, 4);
    }
    if (n >= 2 && (magic[0] & 0xff) == 0x1f && (magic[1] & 0xff) == 0x8b) {
      return List.of("-z");
    }
    if (n >= 4
        && (magic[0] & 0xff) == 0x28
        && (magic[1] & 0xff) == 0xb5
        && (magic[2] & 0xff) == 0x2f
        && (magic[3] & 0xff) == 0xfd) {
      return List.of("--zstd");
    }
    return List.of();
  }

  static String hex(String digest) {
    var m = DIGEST.matcher(digest);
    if (!m.matches()) {
      throw new IllegalArgumentException(
          "layer digest '" + digest + "' is not of the form sha256:<64 lowercase hex digits>");
    }
    return m.group(1);
  }
}
