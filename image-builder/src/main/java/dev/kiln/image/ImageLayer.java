package dev.kiln.image;

import dev.kiln.cache.Digest;
import java.nio.file.Path;

/**
 * One layer of a built image.
 *
 * @param digest digest of the blob as stored (compressed)
 * @param diffId digest of the uncompressed tar
 * @param mediaType the layer's media type
 * @param size blob size in bytes
 * @param blob the local file holding the blob (in the image layout)
 */
public record ImageLayer(Digest digest, Digest diffId, String mediaType, long size, Path blob) {}
