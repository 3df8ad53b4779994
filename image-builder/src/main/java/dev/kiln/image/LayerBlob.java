package dev.kiln.image;

import dev.kiln.cache.Digest;
import java.nio.file.Path;
import java.util.Objects;

/**
 * A layer built ahead of the image: a tar on local disk, plain or gzip-compressed, as {@link
 * WheelLayers} makes for a wheel. An image that uses it gets these exact bytes, so every image with
 * the same package shares the layer.
 *
 * @param file the layer blob; must stay in place, unchanged, until the build is done
 * @param digest sha256 of the blob's bytes (the layer's digest in a manifest)
 * @param diffId sha256 of the uncompressed tar (its diff id in an image config); equals {@code
 *     digest} for a plain tar
 * @param size size of the blob in bytes
 * @param mediaType {@link #TAR} or {@link #TAR_GZIP}
 */
public record LayerBlob(Path file, Digest digest, Digest diffId, long size, String mediaType) {
  /** An uncompressed layer, for images that only this machine reads. */
  public static final String TAR = "application/vnd.oci.image.layer.v1.tar";

  /** A gzip-compressed layer, for images that leave the machine. */
  public static final String TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

  public LayerBlob {
    Objects.requireNonNull(file, "file");
    Objects.requireNonNull(digest, "digest");
    Objects.requireNonNull(diffId, "diffId");
    Objects.requireNonNull(mediaType, "mediaType");
    if (size < 0) {
      throw new IllegalArgumentException("size must not be negative: " + size);
    }
    if (!mediaType.equals(TAR) && !mediaType.equals(TAR_GZIP)) {
      throw new IllegalArgumentException("layer media type must be " + TAR + " or " + TAR_GZIP);
    }
    if (mediaType.equals(TAR) != digest.equals(diffId)) {
      throw new IllegalArgumentException(
          "a plain tar's digest is its diff id, a compressed one's is not: "
              + mediaType
              + " with digest "
              + digest
              + " and diff id "
              + diffId);
    }
  }

  /** A blob whose media type follows from its digests: a plain tar's digest is its diff id. */
  public LayerBlob(Path file, Digest digest, Digest diffId, long size) {
    this(file, digest, diffId, size, digest.equals(diffId) ? TAR : TAR_GZIP);
  }
}
