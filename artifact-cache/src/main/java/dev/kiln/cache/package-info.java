/**
 * Content-addressed blobs (sha256) in three tiers — memory (Caffeine), local disk (RocksDB index
 * plus blob files) and remote (any S3-compatible store) — and staged imports fetched through
 * presigned URLs, with their content identity when they come without a tag.
 *
 * <p>Public API: {@link dev.kiln.cache.ArtifactCache} (opened from a {@link
 * dev.kiln.cache.CacheConfig} with optional {@link dev.kiln.cache.S3Settings}), {@link
 * dev.kiln.cache.ImportFetcher}, {@link dev.kiln.cache.ImportIdentities} and {@link
 * dev.kiln.base.KilnException} (codes IMPORT_FAILED, IMPORT_UNAVAILABLE), the stats records {@link
 * dev.kiln.cache.CacheStats} and {@link dev.kiln.cache.TierStats}, and the older single-tier pieces
 * {@link dev.kiln.cache.Digest}, {@link dev.kiln.cache.BlobStore}, {@link
 * dev.kiln.cache.LocalBlobStore} and {@link dev.kiln.cache.CorruptBlobException}. Everything else
 * is package-private.
 *
 * <p>Allowed dependencies: {@code dev.kiln.base}, the JDK, Caffeine, RocksDB, the AWS SDK v2 (S3),
 * OkHttp, Micrometer, SLF4J. Nothing here knows what a blob means (a wheel, a layer, an import).
 */
package dev.kiln.cache;
