package dev.kiln.definition;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.List;
import java.util.Objects;

/**
 * Computes {@link ContentKey}s. Every part is length-prefixed before hashing so that no two
 * different inputs can produce the same byte stream.
 */
public final class ContentKeys {
  private static final String DOMAIN = "kiln-content-key/v1";

  private ContentKeys() {}

  /**
   * The key of a UDF resource.
   *
   * @param spec the validated spec (hashed in canonical form)
   * @param imports each import's location and tag, in request order; never the URL
   * @param baseImageDigest digest of the base image the UDF runs on
   * @param runnerVersion version (content hash) of the in-sandbox runner
   * @param lock the exact package lock, or the empty string when there are no packages
   */
  public static ContentKey compute(
      RuntimeSpec spec,
      List<ImportRef> imports,
      String baseImageDigest,
      String runnerVersion,
      String lock) {
    Objects.requireNonNull(baseImageDigest, "baseImageDigest");
    Objects.requireNonNull(runnerVersion, "runnerVersion");
    Objects.requireNonNull(lock, "lock");
    MessageDigest sha = sha256();
    part(sha, DOMAIN);
    part(sha, spec.canonicalJson());
    part(sha, String.valueOf(imports.size()));
    for (ImportRef ref : imports) {
      part(sha, ref.location());
      part(sha, ref.tag());
    }
    part(sha, baseImageDigest);
    part(sha, runnerVersion);
    part(sha, lock);
    return ContentKey.ofBytes(sha.digest());
  }

  /**
   * A key for a variant of what {@code key} names (e.g. the same UDF in a bigger sandbox): the same
   * inputs and the same variant give the same key, another variant another key.
   */
  public static ContentKey variant(ContentKey key, String variant) {
    Objects.requireNonNull(variant, "variant");
    MessageDigest sha = sha256();
    part(sha, DOMAIN + "/variant");
    part(sha, key.hex());
    part(sha, variant);
    return ContentKey.ofBytes(sha.digest());
  }

  private static void part(MessageDigest sha, String s) {
    byte[] bytes = s.getBytes(StandardCharsets.UTF_8);
    sha.update(ByteBuffer.allocate(8).putLong(bytes.length).array());
    sha.update(bytes);
  }

  private static MessageDigest sha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every JDK has SHA-256", e);
    }
  }
}
