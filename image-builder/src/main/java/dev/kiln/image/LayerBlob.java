package dev.kiln.image;

import dev.kiln.cache.Digest;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A layer built ahead of the image: a gzip-compressed tar on local disk, as {@link WheelLayers}
 * makes for a wheel. An image that uses it gets these exact bytes, so every image with the same
 * package shares the layer.
 *
 * @param file the compressed layer; must stay in place, unchanged, until the build is done
 * @param digest sha256 of the compressed bytes (the layer's digest in a manifest)
 * @param diffId sha256 of the uncompressed tar (its diff id in an image config)
 * @param size size of the compressed file in bytes
 */
public record LayerBlob(Path file, Digest digest, Digest diffId, long size) {
  public LayerBlob {
    Objects.requireNonNull(file, "file");
    Objects.requireNonNull(digest, "digest");
    Objects.requireNonNull(diffId, "diffId");
    if (size < 0) {
      throw new IllegalArgumentException("size must not be negative: " + size);
    }
  }
}
