package dev.kiln.resolver;

import java.net.URI;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * One resolved wheel.
 *
 * @param name normalised project name
 * @param version the version, normalised
 * @param filename the wheel's file name (its tags say where it can be installed)
 * @param url where it is downloaded from (never with credentials)
 * @param sha256 the wheel's sha256, 64 lowercase hex digits; downloads are checked against it
 */
public record LockedPackage(String name, String version, String filename, URI url, String sha256) {
  private static final Pattern HEX64 = Pattern.compile("[0-9a-f]{64}");

  public LockedPackage {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(version, "version");
    Objects.requireNonNull(filename, "filename");
    Objects.requireNonNull(url, "url");
    if (sha256 == null || !HEX64.matcher(sha256).matches()) {
      throw new IllegalArgumentException("sha256 must be 64 lowercase hex digits, got " + sha256);
    }
  }

  /** {@code name==version}. */
  @Override
  public String toString() {
    return name + "==" + version;
  }
}
