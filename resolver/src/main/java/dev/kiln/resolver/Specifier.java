package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * One PEP 440 version clause such as {@code >=1.2} or {@code ==2.*}.
 *
 * @param op the operator: {@code ~= == != <= >= < > ===}
 * @param version the version operand (null only for {@code ===}, which compares text)
 * @param wildcard whether the operand ended in {@code .*} (only with {@code ==} and {@code !=})
 * @param text the operand as written (what {@code ===} compares)
 */
record Specifier(String op, Version version, boolean wildcard, String text) {
  private static final Pattern CLAUSE =
      Pattern.compile("\\s*(~=|===|==|!=|<=|>=|<|>)\\s*(\\S.*?)\\s*");

  static Specifier parse(String clause) throws KilnException {
    Matcher m = CLAUSE.matcher(clause);
    if (!m.matches()) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "'"
              + clause.strip()
              + "' is not a version clause; expected an operator (==, !=, >=, <=,"
              + " >, <, ~=, ===) followed by a version, e.g. '>=1.2'");
    }
    String op = m.group(1);
    String operand = m.group(2);
    if (op.equals("===")) {
      if (operand.contains(" ")) {
        throw new KilnException(
            ErrorCode.INVALID_REQUIREMENT, "'" + clause.strip() + "': '===' takes one word");
      }
      return new Specifier(op, Version.tryParse(operand), false, operand);
    }
    boolean wildcard = operand.endsWith(".*");
    if (wildcard && !(op.equals("==") || op.equals("!="))) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "'" + clause.strip() + "': a '.*' suffix is only allowed with == and !=");
    }
    String versionText = wildcard ? operand.substring(0, operand.length() - 2) : operand;
    Version v = Version.tryParse(versionText);
    if (v == null) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "'" + clause.strip() + "': '" + operand + "' is not a valid version (PEP 440)");
    }
    if (v.hasLocal() && (wildcard || !(op.equals("==") || op.equals("!=")))) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "'"
              + clause.strip()
              + "': a local version label (+"
              + v.local()
              + ") is only allowed"
              + " with == and != and no '.*'");
    }
    if (op.equals("~=") && v.release().size() < 2) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "'" + clause.strip() + "': ~= needs at least two release segments, e.g. '~=1.4'");
    }
    return new Specifier(op, v, wildcard, operand);
  }

  /** Whether this clause on its own names a pre-release, which lets pre-releases match. */
  boolean requestsPrereleases() {
    return !op.equals("!=") && version != null && version.isPrerelease();
  }

  /** Whether {@code v} satisfies this clause, pre-releases allowed (the set filters them). */
  boolean contains(Version v) {
    return switch (op) {
      case "===" -> v.toString().equalsIgnoreCase(text);
      case "==" -> equal(v);
      case "!=" -> !equal(v);
      case "~=" -> v.publicVersion().compareTo(version) >= 0 && prefixMatch(v, compatiblePrefix());
      case "<=" -> v.publicVersion().compareTo(version) <= 0;
      case ">=" -> v.publicVersion().compareTo(version) >= 0;
      case "<" -> less(v);
      case ">" -> greater(v);
      default -> throw new IllegalStateException(op);
    };
  }

  private boolean equal(Version v) {
    if (wildcard) {
      return prefixMatch(v, version);
    }
    // Without a local label in the clause, the candidate's local label is ignored.
    return version.hasLocal() ? v.equals(version) : v.publicVersion().equals(version);
  }

  private boolean less(Version v) {
    Version p = v.publicVersion();
    if (p.compareTo(version) >= 0) {
      return false;
    }
    // "<3.1" must not admit 3.1.0a1: a pre-release of the named version is not "less" enough.
    return version.isPrerelease()
        || !p.isPrerelease()
        || !p.baseVersion().equals(version.baseVersion());
  }

  private boolean greater(Version v) {
    if (v.publicVersion().compareTo(version) <= 0) {
      return false;
    }
    // ">3.1" must not admit 3.1.post1 (unless the clause is a post-release) nor 3.1+local.
    if (!version.isPostRelease()
        && v.isPostRelease()
        && v.baseVersion().equals(version.baseVersion())) {
      return false;
    }
    return !v.hasLocal() || !v.baseVersion().equals(version.baseVersion());
  }

  /** {@code ~=1.4.5} allows {@code ==1.4.*}: the release without its last segment. */
  private Version compatiblePrefix() {
    List<Long> r = version.release().subList(0, version.release().size() - 1);
    return new Version(version.epoch(), r, "", 0, -1, -1, "");
  }

  /**
   * Prefix matching as PEP 440 defines it for {@code ==X.*}: the candidate (without local label,
   * release padded with zeros) starts with the clause's components.
   */
  private static boolean prefixMatch(Version candidate, Version prefix) {
    List<String> want = components(prefix, prefix.release().size());
    List<String> have = components(candidate.publicVersion(), prefix.release().size());
    if (have.size() < want.size()) {
      return false;
    }
    return have.subList(0, want.size()).equals(want);
  }

  private static List<String> components(Version v, int padReleaseTo) {
    List<String> out = new ArrayList<>();
    out.add(Long.toString(v.epoch()));
    List<Long> r = v.release();
    for (int i = 0; i < Math.max(r.size(), padReleaseTo); i++) {
      out.add(Long.toString(i < r.size() ? r.get(i) : 0));
    }
    if (!v.preLabel().isEmpty()) {
      out.add(v.preLabel() + v.preNumber());
    }
    if (v.post() >= 0) {
      out.add("post" + v.post());
    }
    if (v.dev() >= 0) {
      out.add("dev" + v.dev());
    }
    return out;
  }

  /**
   * Canonical spelling: operator and normalised version, no spaces. Trailing zeros are dropped
   * where they cannot change the meaning ({@code ==2.0.0} is {@code ==2}); with {@code ~=} and
   * {@code .*} they are kept, since there they do.
   */
  @Override
  public String toString() {
    if (op.equals("===")) {
      return op + text.toLowerCase(Locale.ROOT);
    }
    if (wildcard || op.equals("~=")) {
      return op + version + (wildcard ? ".*" : "");
    }
    return op + version.canonicalString();
  }
}
