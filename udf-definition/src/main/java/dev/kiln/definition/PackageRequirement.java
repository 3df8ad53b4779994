package dev.kiln.definition;

import java.util.Objects;

/**
 * A Python package requirement as the UDF states it, unparsed, and where it is stated, so that an
 * error about it can point there.
 *
 * @param text the requirement as written, e.g. {@code pandas>=2}
 * @param origin where it is written, for messages: {@code spec field 'packages[0]'} or {@code the
 *     code's PEP 723 block (# /// script): PEP 723 block at line 3}
 */
public record PackageRequirement(String text, String origin) {
  public PackageRequirement {
    Objects.requireNonNull(text, "text");
    Objects.requireNonNull(origin, "origin");
  }
}
