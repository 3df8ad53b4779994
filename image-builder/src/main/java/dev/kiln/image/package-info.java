/**
 * Builds UDF images with Jib Core over a Python base image into a local OCI image layout, with one
 * layer per Python wheel.
 *
 * <p>Public API: {@link dev.kiln.image.BaseImage}, {@link dev.kiln.image.ImageBuilder}, the request
 * and result records ({@link dev.kiln.image.ImageRequest}, {@link dev.kiln.image.LayerSpec}, {@link
 * dev.kiln.image.LayerFile}, {@link dev.kiln.image.BuiltImage}, {@link dev.kiln.image.ImageLayer}),
 * and for packages {@link dev.kiln.image.WheelLayers} and {@link dev.kiln.image.InstallLayout}.
 * Errors are {@link dev.kiln.base.KilnException}s (base image, build, invalid wheel). Everything
 * else is package-private.
 *
 * <p>Allowed dependencies: {@code dev.kiln.base}, {@code dev.kiln.cache} (digests, the blob store
 * under the layout), Jib Core (and Guava, for the lists Jib's layer cache takes), Jackson, Commons
 * Compress, SLF4J. Nothing here knows how images are run (an {@link dev.kiln.image.ImageHost} runs
 * them) or where wheels come from.
 */
package dev.kiln.image;
