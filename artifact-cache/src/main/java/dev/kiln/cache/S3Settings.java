package dev.kiln.cache;

import java.net.URI;
import java.util.Objects;
import java.util.Optional;

/**
 * Where the remote tier lives: any S3-compatible endpoint (AWS S3, MinIO, GCS interop, s3proxy).
 *
 * <p>Blobs are stored as {@code <prefix>sha256/<hex>} in {@code bucket}. Without {@code
 * accessKeyId}/{@code secretAccessKey} the AWS SDK's default credential chain is used (environment,
 * profile, instance role).
 *
 * <p><b>Google Cloud Storage</b> works through its S3-compatible XML API, no separate SDK needed:
 * {@code endpoint = https://storage.googleapis.com}, {@code region = auto} (any value is accepted),
 * {@code pathStyle = true}, and an HMAC key of a service account (Cloud Console → Cloud Storage →
 * Settings → Interoperability) as access key id and secret. The client sends no flexible checksums,
 * which GCS does not understand; blobs are verified against their sha256 on every read instead.
 *
 * @param bucket the bucket, which must exist
 * @param prefix key prefix, e.g. {@code kiln/}; empty for the bucket root
 * @param endpoint the service endpoint; empty for AWS S3 in {@code region}
 * @param region the signing region, e.g. {@code us-east-1}
 * @param pathStyle {@code https://host/bucket/key} instead of {@code https://bucket.host/key}
 *     (MinIO, s3proxy and most self-hosted stores need it)
 * @param accessKeyId static credentials; empty for the default credential chain
 * @param secretAccessKey static credentials; empty for the default credential chain
 */
public record S3Settings(
    String bucket,
    String prefix,
    Optional<URI> endpoint,
    String region,
    boolean pathStyle,
    Optional<String> accessKeyId,
    Optional<String> secretAccessKey) {

  public S3Settings {
    if (bucket == null || bucket.isBlank()) {
      throw new IllegalArgumentException("the S3 bucket of the remote cache tier is empty");
    }
    prefix = prefix == null ? "" : prefix;
    Objects.requireNonNull(endpoint, "endpoint (use Optional.empty() for AWS S3)");
    if (region == null || region.isBlank()) {
      throw new IllegalArgumentException(
          "the S3 region of the remote cache tier is empty (any value works for MinIO and GCS)");
    }
    Objects.requireNonNull(accessKeyId, "accessKeyId");
    Objects.requireNonNull(secretAccessKey, "secretAccessKey");
    if (accessKeyId.isPresent() != secretAccessKey.isPresent()) {
      throw new IllegalArgumentException(
          "give both an S3 access key id and a secret access key, or neither (to use the default"
              + " credential chain)");
    }
  }

  /** The object key prefix with a trailing slash (or empty). */
  String keyPrefix() {
    return prefix.isEmpty() || prefix.endsWith("/") ? prefix : prefix + "/";
  }

  @Override
  public String toString() {
    // Never print the secret.
    return "S3Settings[bucket="
        + bucket
        + ", prefix="
        + prefix
        + ", endpoint="
        + endpoint.map(URI::toString).orElse("aws")
        + ", region="
        + region
        + ", pathStyle="
        + pathStyle
        + ", accessKeyId="
        + accessKeyId.orElse("<default chain>")
        + "]";
  }
}
