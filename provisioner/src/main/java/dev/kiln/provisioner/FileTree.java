package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;

/** Deletes directory trees that Kiln made (extracted layers, sandbox directories). */
final class FileTree {
  private FileTree() {}

  /**
   * Deletes {@code dir} and everything in it, without following symbolic links. Refuses when
   * something is still mounted below it: deleting through a mount would reach into the mounted file
   * system (an image layer, or worse).
   */
  static void delete(Path dir) throws IOException {
    if (!Files.exists(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) {
      return;
    }
    var mounted = MountTable.mountPointsUnder(dir);
    if (!mounted.isEmpty()) {
      throw new IOException(
          "not deleting " + dir + ": " + mounted + " is still mounted there; unmount it first");
    }
    Files.walkFileTree(
        dir,
        new SimpleFileVisitor<>() {
          @Override
          public FileVisitResult visitFile(Path file, BasicFileAttributes attrs)
              throws IOException {
            deleteIfExists(file);
            return FileVisitResult.CONTINUE;
          }

          @Override
          public FileVisitResult visitFileFailed(Path file, IOException e) throws IOException {
            if (e instanceof NoSuchFileException) {
              return FileVisitResult.CONTINUE;
            }
            throw e;
          }

          @Override
          public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
            if (e != null && !(e instanceof NoSuchFileException)) {
              throw e;
            }
            deleteIfExists(d);
            return FileVisitResult.CONTINUE;
          }
        });
  }

  private static void deleteIfExists(Path p) throws IOException {
    Files.deleteIfExists(p);
  }
}
