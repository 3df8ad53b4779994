package dev.kiln.image;

import java.nio.file.Path;
import java.util.Objects;

/**
 * One file of a layer: its absolute path in the image and its content, either in memory or in a
 * local file (for large files that must not be held on the heap).
 *
 * @param pathInImage absolute path inside the image, e.g. {@code /kiln/udf/udf.py}
 * @param content the bytes, or null when {@code source} is set
 * @param source a local file to copy, or null when {@code content} is set
 * @param mode POSIX permission bits, e.g. {@code 0644}
 */
public record LayerFile(String pathInImage, byte[] content, Path source, int mode) {
  public LayerFile {
    Objects.requireNonNull(pathInImage, "pathInImage");
    if (!pathInImage.startsWith("/")) {
      throw new IllegalArgumentException("path in image must be absolute: " + pathInImage);
    }
    if ((content == null) == (source == null)) {
      throw new IllegalArgumentException("exactly one of content and source must be set");
    }
  }

  public static LayerFile ofBytes(String pathInImage, byte[] content, int mode) {
    return new LayerFile(pathInImage, content, null, mode);
  }

  public static LayerFile ofFile(String pathInImage, Path source, int mode) {
    return new LayerFile(pathInImage, null, source, mode);
  }
}
