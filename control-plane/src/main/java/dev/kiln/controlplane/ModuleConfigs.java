package dev.kiln.controlplane;

import dev.kiln.cache.CacheConfig;
import dev.kiln.cache.S3Settings;
import dev.kiln.resolver.IndexConfig;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** A server's configuration as the artifact cache and the package resolver take it. */
final class ModuleConfigs {
  private ModuleConfigs() {}

  /** The artifact cache's settings: its directory {@code dir}, sizes, and the S3 tier if any. */
  static CacheConfig cache(KilnConfig config, Path dir) {
    CacheConfig c =
        new CacheConfig(
            dir,
            config.cacheMemoryBytes(),
            CacheConfig.DEFAULT_MEMORY_MAX_BLOB_BYTES,
            config.cacheLocalMaxBytes(),
            Optional.empty());
    if (config.s3Bucket() == null || config.s3Bucket().isBlank()) {
      return c;
    }
    return c.withRemote(
        new S3Settings(
            config.s3Bucket(),
            config.s3Prefix(),
            Optional.ofNullable(config.s3Endpoint()).filter(s -> !s.isBlank()).map(URI::create),
            config.s3Region(),
            config.s3PathStyle(),
            Optional.empty(),
            Optional.empty()));
  }

  /** The package indexes to resolve from, and their login. */
  static IndexConfig index(KilnConfig config) {
    List<URI> urls = new ArrayList<>();
    for (String u : config.indexUrls()) {
      urls.add(URI.create(u));
    }
    return new IndexConfig(
        urls,
        Optional.ofNullable(config.indexUsername()),
        Optional.ofNullable(config.indexPassword()),
        Duration.ofSeconds(30));
  }
}
