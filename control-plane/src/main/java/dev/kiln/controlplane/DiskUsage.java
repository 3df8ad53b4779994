package dev.kiln.controlplane;

import java.io.IOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;

/**
 * Disk use under the data directory by kind, each kind owned by one module: images (OCI layouts)
 * and Jib's layer caches (image-builder), wheel layers (image-builder), extracted layers and
 * sandbox directories (provisioner), the blob cache (artifact-cache), the package index cache
 * (resolver), the compressed layers kept for registry pushes (image-builder, with {@code
 * --registry}), Kiln's records (definitions, workers, base facts, token secret) and temporary
 * files. Sandboxes' mounted root file systems are not walked: their files are the extracted
 * layers'.
 */
final class DiskUsage {

  /** Bytes and files of one kind. */
  record Use(long bytes, long files) {}

  private DiskUsage() {}

  /** The use of each kind under {@code data}, by kind name. */
  static Map<String, Use> measure(Path data) throws IOException {
    Map<String, long[]> sums = new TreeMap<>();
    Set<Object> seen = new HashSet<>();
    if (!Files.isDirectory(data)) {
      return Map.of();
    }
    Files.walkFileTree(
        data,
        new SimpleFileVisitor<>() {
          @Override
          public FileVisitResult preVisitDirectory(Path dir, BasicFileAttributes attrs) {
            Path rel = data.relativize(dir);
            boolean rootfs =
                rel.getNameCount() == 4
                    && rel.getName(0).toString().equals("provisioner")
                    && rel.getName(1).toString().equals("sandboxes")
                    && rel.getName(3).toString().equals("rootfs");
            return rootfs ? FileVisitResult.SKIP_SUBTREE : FileVisitResult.CONTINUE;
          }

          @Override
          public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) {
            long[] s = sums.computeIfAbsent(kind(data.relativize(file)), k -> new long[2]);
            // A file linked under two names (a package layer in the wheel cache and in the image
            // layout) takes its bytes once, under the first name met.
            Object key = attrs.fileKey();
            if (key == null || seen.add(key)) {
              s[0] += attrs.size();
            }
            s[1]++;
            return FileVisitResult.CONTINUE;
          }

          @Override
          public FileVisitResult visitFileFailed(Path file, IOException e) {
            return FileVisitResult.CONTINUE; // removed meanwhile
          }
        });
    Map<String, Use> out = new TreeMap<>();
    sums.forEach((k, s) -> out.put(k, new Use(s[0], s[1])));
    return out;
  }

  /** The kind of a file, by where it lies under the data directory. */
  static String kind(Path rel) {
    String first = rel.getName(0).toString();
    String second = rel.getNameCount() > 1 ? rel.getName(1).toString() : "";
    return switch (first) {
      case "images" ->
          switch (second) {
            case "oci" -> "images";
            case "jib" -> "jib-caches";
            default -> "temporary";
          };
      case "provisioner" -> second.equals("layers") ? "extracted-layers" : "sandboxes";
      case "wheel-layers" -> "wheel-layers";
      case "registry-layers" -> "registry-layers";
      case "cache" -> "blob-cache";
      case "packages" -> "package-index";
      case "runtimes", "definitions", "workers.json", "token-secret", "kiln.lock" -> "records";
      case "tmp" -> "temporary";
      default -> "other";
    };
  }
}
