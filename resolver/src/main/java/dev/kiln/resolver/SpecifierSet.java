package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.stream.Collectors;

/**
 * A PEP 440 version specifier set such as {@code >=1.2,!=1.3.*,<2}: a version matches when it
 * satisfies every clause. The empty set matches every version.
 */
public final class SpecifierSet {
  private static final SpecifierSet ANY = new SpecifierSet(List.of());

  private final List<Specifier> clauses;

  private SpecifierSet(List<Specifier> clauses) {
    this.clauses = List.copyOf(clauses);
  }

  /** Parses a comma-separated list of clauses; blank text is the set that matches everything. */
  public static SpecifierSet parse(String text) throws KilnException {
    if (text == null || text.isBlank()) {
      return ANY;
    }
    List<Specifier> out = new ArrayList<>();
    for (String clause : text.split(",", -1)) {
      if (clause.isBlank()) {
        throw new KilnException(
            ErrorCode.INVALID_REQUIREMENT,
            "'"
                + text.strip()
                + "' has an empty clause; separate clauses with single commas,"
                + " e.g. '>=1.2,<2'");
      }
      out.add(Specifier.parse(clause));
    }
    out.sort(Comparator.comparing(Specifier::toString));
    return new SpecifierSet(out);
  }

  /**
   * Whether {@code v} matches. A pre-release matches only when {@code allowPrereleases} is true or
   * a clause itself names a pre-release ({@code >=2.0b1}), as PEP 440 asks.
   */
  public boolean contains(Version v, boolean allowPrereleases) {
    if (v.isPrerelease() && !allowPrereleases && !requestsPrereleases()) {
      return false;
    }
    for (Specifier s : clauses) {
      if (!s.contains(v)) {
        return false;
      }
    }
    return true;
  }

  /** Whether a clause names a pre-release, which lets pre-releases match. */
  public boolean requestsPrereleases() {
    for (Specifier s : clauses) {
      if (s.requestsPrereleases()) {
        return true;
      }
    }
    return false;
  }

  public boolean isEmpty() {
    return clauses.isEmpty();
  }

  /** The exact version this set pins with {@code ==V} (no wildcard) or {@code ===V}, if any. */
  public Optional<Version> exactPin() {
    for (Specifier s : clauses) {
      if ((s.op().equals("==") && !s.wildcard()) || (s.op().equals("===") && s.version() != null)) {
        return Optional.of(s.version());
      }
    }
    return Optional.empty();
  }

  List<Specifier> clauses() {
    return clauses;
  }

  /** Canonical form: clauses normalised, sorted and comma-separated ("" for any version). */
  @Override
  public String toString() {
    return clauses.stream().map(Specifier::toString).collect(Collectors.joining(","));
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof SpecifierSet s && s.toString().equals(toString());
  }

  @Override
  public int hashCode() {
    return toString().hashCode();
  }
}
