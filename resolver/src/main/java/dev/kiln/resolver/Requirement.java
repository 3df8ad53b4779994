package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.Collections;
import java.util.HashMap;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A PEP 508 requirement. name is PEP 503-normalised; specifier canonical ("" = any).
 *
 * @param name the project name, normalised ({@code Foo_Bar} becomes {@code foo-bar})
 * @param extras requested extras, normalised and sorted
 * @param specifier the version specifier set in canonical form, "" for any version
 * @param marker the environment marker in canonical form, if any
 * @param raw the text as given
 */
public record Requirement(
    String name, Set<String> extras, String specifier, Optional<String> marker, String raw) {

  private static final Pattern NAME = Pattern.compile("[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?");
  private static final Pattern SEPARATORS = Pattern.compile("[-_.]+");

  public Requirement {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(specifier, "specifier");
    Objects.requireNonNull(marker, "marker");
    Objects.requireNonNull(raw, "raw");
    extras = Collections.unmodifiableSet(new TreeSet<>(extras));
  }

  /** PEP 503 normalisation: lower case, runs of {@code - _ .} become one {@code -}. */
  public static String normalizeName(String name) {
    return SEPARATORS.matcher(name.strip()).replaceAll("-").toLowerCase(Locale.ROOT);
  }

  /**
   * Parses one PEP 508 requirement such as {@code pandas[performance]>=2.1; python_version >=
   * "3.10"}. The message names the string and the problem; direct URL requirements are refused.
   */
  public static Requirement parse(String text) throws KilnException {
    if (text == null || text.isBlank()) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "a requirement is empty; expected e.g. 'numpy' or 'humanize==4.9.0'");
    }
    try {
      return parseOrThrow(text);
    } catch (KilnException e) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "invalid requirement '" + text.strip() + "': " + e.getMessage());
    }
  }

  private static Requirement parseOrThrow(String text) throws KilnException {
    String s = text.strip();
    Matcher m = NAME.matcher(s);
    if (!s.contains("@") && looksLikeUrlOrPath(s)) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "direct URL and file requirements are not supported; name a package from the index,"
              + " e.g. 'numpy==2.1.3'");
    }
    if (!m.lookingAt()) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "expected a package name at the start (letters, digits, '-', '_', '.'), e.g. 'numpy'");
    }
    String name = normalizeName(m.group());
    int pos = m.end();
    pos = skipSpace(s, pos);

    Set<String> extras = new TreeSet<>();
    if (pos < s.length() && s.charAt(pos) == '[') {
      int close = s.indexOf(']', pos);
      if (close < 0) {
        throw new KilnException(
            ErrorCode.INVALID_REQUIREMENT, "the extras list is missing its closing ']'");
      }
      String inner = s.substring(pos + 1, close);
      if (!inner.isBlank()) {
        for (String extra : inner.split(",", -1)) {
          String e = extra.strip();
          if (!NAME.matcher(e).matches()) {
            throw new KilnException(
                ErrorCode.INVALID_REQUIREMENT,
                "'" + e + "' is not a valid extra name; write extras as [name1,name2]");
          }
          extras.add(normalizeName(e));
        }
      }
      pos = skipSpace(s, close + 1);
    }

    if (pos < s.length() && s.charAt(pos) == '@') {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "direct URL requirements are not supported ('name @ url'); name a version from the"
              + " package index instead, e.g. '"
              + name
              + "==1.2.3'");
    }

    String specText;
    int semicolon = s.indexOf(';', pos);
    String rest = semicolon < 0 ? s.substring(pos) : s.substring(pos, semicolon);
    String versionPart = rest.strip();
    if (versionPart.startsWith("(")) {
      if (!versionPart.endsWith(")")) {
        throw new KilnException(
            ErrorCode.INVALID_REQUIREMENT, "the version specifier is missing its closing ')'");
      }
      versionPart = versionPart.substring(1, versionPart.length() - 1);
    }
    if (!versionPart.isEmpty() && "<>=!~".indexOf(versionPart.charAt(0)) < 0) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "unexpected '"
              + versionPart
              + "' after the package name; expected a version"
              + " specifier such as '>=1.2' or '==1.2.3', or '; marker'");
    }
    specText = SpecifierSet.parse(versionPart).toString();

    Optional<String> marker = Optional.empty();
    if (semicolon >= 0) {
      String markerText = s.substring(semicolon + 1);
      if (markerText.isBlank()) {
        throw new KilnException(
            ErrorCode.INVALID_REQUIREMENT,
            "nothing follows ';'; expected a marker such as" + " python_version >= \"3.8\"");
      }
      marker = Optional.of(Marker.parse(markerText).toString());
    }
    return new Requirement(name, extras, specText, marker, text);
  }

  private static boolean looksLikeUrlOrPath(String s) {
    String lower = s.toLowerCase(Locale.ROOT);
    return lower.matches("^[a-z][a-z0-9+.-]*://.*")
        || lower.startsWith("git+")
        || lower.startsWith("file:")
        || lower.startsWith("./")
        || lower.startsWith("../")
        || lower.startsWith("/")
        || lower.startsWith("~")
        || lower.endsWith(".whl")
        || lower.endsWith(".tar.gz")
        || lower.endsWith(".zip");
  }

  private static int skipSpace(String s, int pos) {
    while (pos < s.length() && Character.isWhitespace(s.charAt(pos))) {
      pos++;
    }
    return pos;
  }

  /**
   * Whether this requirement applies in {@code markerEnvironment} (PEP 508 variables) when the
   * requiring package is installed with {@code activeExtras}. A requirement without a marker always
   * applies; {@code extra == "x"} holds when x is one of the active extras.
   */
  public boolean appliesTo(Map<String, String> markerEnvironment, Set<String> activeExtras) {
    if (marker.isEmpty()) {
      return true;
    }
    Marker m;
    try {
      m = Marker.parse(marker.get());
    } catch (KilnException e) {
      throw new IllegalStateException("a canonical marker always parses: " + marker.get(), e);
    }
    Map<String, String> env = new HashMap<>(markerEnvironment);
    env.put("extra", "");
    if (m.evaluate(env)) {
      return true;
    }
    for (String extra : activeExtras) {
      env.put("extra", normalizeName(extra));
      if (m.evaluate(env)) {
        return true;
      }
    }
    return false;
  }

  /** The version specifier as a set (parsing the canonical form never fails). */
  public SpecifierSet specifierSet() {
    try {
      return SpecifierSet.parse(specifier);
    } catch (KilnException e) {
      throw new IllegalStateException("a canonical specifier always parses: " + specifier, e);
    }
  }

  /**
   * The requirement in canonical form ({@code name[extra1,extra2]spec; marker}): what two spellings
   * of the same requirement have in common.
   */
  public String canonical() {
    StringBuilder sb = new StringBuilder(name);
    if (!extras.isEmpty()) {
      sb.append('[').append(String.join(",", extras)).append(']');
    }
    sb.append(specifier);
    marker.ifPresent(m -> sb.append("; ").append(m));
    return sb.toString();
  }

  @Override
  public String toString() {
    return canonical();
  }
}
