package dev.kiln.cache;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.regex.Pattern;

/** A sha256 content digest, written {@code sha256:<64 hex>} as in OCI descriptors. */
public record Digest(String hex) implements Comparable<Digest> {
  private static final Pattern HEX64 = Pattern.compile("[0-9a-f]{64}");
  private static final String PREFIX = "sha256:";

  public Digest {
    if (hex == null || !HEX64.matcher(hex).matches()) {
      throw new IllegalArgumentException("a sha256 digest is 64 lowercase hex digits, got " + hex);
    }
  }

  /** Parses {@code sha256:<hex>} (or a bare hex string). */
  public static Digest parse(String text) {
    if (text == null) {
      throw new IllegalArgumentException("digest is null");
    }
    return new Digest(text.startsWith(PREFIX) ? text.substring(PREFIX.length()) : text);
  }

  public static Digest of(byte[] bytes) {
    MessageDigest sha = newSha256();
    return new Digest(HexFormat.of().formatHex(sha.digest(bytes)));
  }

  public static Digest of(String utf8) {
    return of(utf8.getBytes(StandardCharsets.UTF_8));
  }

  /** Reads the stream to its end and returns the digest of what it read. */
  public static Digest of(InputStream in) throws IOException {
    MessageDigest sha = newSha256();
    byte[] buf = new byte[1 << 16];
    int n;
    while ((n = in.read(buf)) > 0) {
      sha.update(buf, 0, n);
    }
    return new Digest(HexFormat.of().formatHex(sha.digest()));
  }

  public static MessageDigest newSha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every JDK has SHA-256", e);
    }
  }

  public static Digest fromSha(MessageDigest sha) {
    return new Digest(HexFormat.of().formatHex(sha.digest()));
  }

  @Override
  public int compareTo(Digest o) {
    return hex.compareTo(o.hex);
  }

  @Override
  public String toString() {
    return PREFIX + hex;
  }
}
