package dev.kiln.definition;

import java.util.HexFormat;
import java.util.regex.Pattern;

/**
 * The content-addressed identity of a UDF resource: a sha256 over everything that determines what
 * runs (canonical spec, imports' location and tag, base image digest, runner version). Same inputs,
 * same key.
 */
public record ContentKey(String hex) {
  private static final Pattern HEX64 = Pattern.compile("[0-9a-f]{64}");

  public ContentKey {
    if (hex == null || !HEX64.matcher(hex).matches()) {
      throw new IllegalArgumentException("a content key is 64 lowercase hex digits, got " + hex);
    }
  }

  public static ContentKey ofBytes(byte[] sha256) {
    if (sha256.length != 32) {
      throw new IllegalArgumentException("sha256 is 32 bytes");
    }
    return new ContentKey(HexFormat.of().formatHex(sha256));
  }

  /** The first 12 hex digits: enough to tell keys apart in logs and names. */
  public String shortForm() {
    return hex.substring(0, 12);
  }

  @Override
  public String toString() {
    return hex;
  }
}
