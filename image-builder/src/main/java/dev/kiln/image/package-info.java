/**
 * Builds UDF images with Jib Core over a Python base image into a local OCI image layout.
 *
 * <p>Public API: {@link dev.kiln.image.BaseImage}, {@link dev.kiln.image.ImageBuilder}, the request
 * and result records ({@link dev.kiln.image.ImageRequest}, {@link dev.kiln.image.LayerSpec}, {@link
 * dev.kiln.image.LayerFile}, {@link dev.kiln.image.BuiltImage}, {@link dev.kiln.image.ImageLayer})
 * and {@link dev.kiln.image.ImageBuildException}. Everything else is package-private.
 *
 * <p>Allowed dependencies: {@code dev.kiln.cache} (digests, the blob store under the layout), Jib
 * Core, Jackson, Commons Compress, SLF4J. Nothing here knows how images are run.
 */
package dev.kiln.image;
