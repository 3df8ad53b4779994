package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A PEP 440 version. Parsing normalises the spelling ({@code 1.0-ALPHA.1} becomes {@code 1.0a1});
 * equality and order follow PEP 440, so {@code 1.0} equals {@code 1.0.0} even though each keeps its
 * own release segments for {@link #toString()}.
 *
 * @param epoch the epoch ({@code 1!} in {@code 1!2.0}), 0 when absent
 * @param release the release segments as written
 * @param preLabel {@code a}, {@code b} or {@code rc}; empty when this is not a pre-release
 * @param preNumber the pre-release number (0 when {@code preLabel} is empty)
 * @param post the post-release number, -1 when absent
 * @param dev the development release number, -1 when absent
 * @param local the normalised local version label ({@code ubuntu.1}), empty when absent
 */
public record Version(
    long epoch,
    List<Long> release,
    String preLabel,
    long preNumber,
    long post,
    long dev,
    String local)
    implements Comparable<Version> {

  // The grammar of PEP 440's appendix, including every alternative spelling it normalises.
  private static final Pattern PATTERN =
      Pattern.compile(
          "v?"
              + "(?:(?<epoch>[0-9]+)!)?"
              + "(?<release>[0-9]+(?:\\.[0-9]+)*)"
              + "(?<pre>[-_.]?(?<prel>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?<pren>[0-9]+)?)?"
              + "(?<post>(?:-(?<postn1>[0-9]+))|(?:[-_.]?(?<postl>post|rev|r)[-_.]?(?<postn2>[0-9]+)?))?"
              + "(?<dev>[-_.]?(?<devl>dev)[-_.]?(?<devn>[0-9]+)?)?"
              + "(?:\\+(?<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?",
          Pattern.CASE_INSENSITIVE);

  public Version {
    release = List.copyOf(release);
    Objects.requireNonNull(preLabel, "preLabel");
    Objects.requireNonNull(local, "local");
    if (release.isEmpty()) {
      throw new IllegalArgumentException("a version has at least one release segment");
    }
    if (!preLabel.isEmpty() && !List.of("a", "b", "rc").contains(preLabel)) {
      throw new IllegalArgumentException("pre-release label must be a, b or rc: " + preLabel);
    }
    if (preLabel.isEmpty()) {
      preNumber = 0;
    }
  }

  /** Parses and normalises a PEP 440 version; the message names the text when it is not one. */
  public static Version parse(String text) throws KilnException {
    Version v = tryParse(text);
    if (v == null) {
      throw new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "'" + text + "' is not a valid version (PEP 440), e.g. 1.2, 2.0.1, 1.0rc1, 2024.1.post2");
    }
    return v;
  }

  /** Like {@link #parse} but answers null for an invalid version (file names, metadata). */
  static Version tryParse(String text) {
    if (text == null) {
      return null;
    }
    Matcher m = PATTERN.matcher(text.strip());
    if (!m.matches()) {
      return null;
    }
    try {
      long epoch = m.group("epoch") == null ? 0 : Long.parseLong(m.group("epoch"));
      List<Long> release = new ArrayList<>();
      for (String part : m.group("release").split("\\.")) {
        release.add(Long.parseLong(part));
      }
      String preLabel = "";
      long preNumber = 0;
      if (m.group("pre") != null) {
        preLabel =
            switch (m.group("prel").toLowerCase(Locale.ROOT)) {
              case "alpha", "a" -> "a";
              case "beta", "b" -> "b";
              default -> "rc";
            };
        preNumber = m.group("pren") == null ? 0 : Long.parseLong(m.group("pren"));
      }
      long post = -1;
      if (m.group("post") != null) {
        String n = m.group("postn1") != null ? m.group("postn1") : m.group("postn2");
        post = n == null ? 0 : Long.parseLong(n);
      }
      long dev = -1;
      if (m.group("dev") != null) {
        dev = m.group("devn") == null ? 0 : Long.parseLong(m.group("devn"));
      }
      String local = "";
      if (m.group("local") != null) {
        List<String> parts = new ArrayList<>();
        for (String seg : m.group("local").toLowerCase(Locale.ROOT).split("[-_.]")) {
          parts.add(isDigits(seg) ? Long.toString(Long.parseLong(seg)) : seg);
        }
        local = String.join(".", parts);
      }
      return new Version(epoch, release, preLabel, preNumber, post, dev, local);
    } catch (NumberFormatException e) {
      return null; // a segment beyond the range of a long: not a version we can order
    }
  }

  /** A pre-release or development release ({@code 1.0a1}, {@code 1.0.dev3}). */
  public boolean isPrerelease() {
    return !preLabel.isEmpty() || dev >= 0;
  }

  public boolean isPostRelease() {
    return post >= 0;
  }

  public boolean isDevRelease() {
    return dev >= 0;
  }

  public boolean hasLocal() {
    return !local.isEmpty();
  }

  /** This version without its local label. */
  public Version publicVersion() {
    return local.isEmpty() ? this : new Version(epoch, release, preLabel, preNumber, post, dev, "");
  }

  /** Epoch and release only ({@code 1!2.0rc1.post3} gives {@code 1!2.0}). */
  public Version baseVersion() {
    return new Version(epoch, release, "", 0, -1, -1, "");
  }

  @Override
  public int compareTo(Version o) {
    int c = Long.compare(epoch, o.epoch);
    if (c != 0) {
      return c;
    }
    c = compareRelease(release, o.release);
    if (c != 0) {
      return c;
    }
    c = Long.compare(preRank(), o.preRank());
    if (c != 0) {
      return c;
    }
    if (!preLabel.isEmpty()) {
      c = Long.compare(preNumber, o.preNumber);
      if (c != 0) {
        return c;
      }
    }
    c = Long.compare(post, o.post); // -1 (none) sorts before every post-release
    if (c != 0) {
      return c;
    }
    c = Long.compare(dev < 0 ? Long.MAX_VALUE : dev, o.dev < 0 ? Long.MAX_VALUE : o.dev);
    if (c != 0) {
      return c;
    }
    return compareLocal(local, o.local);
  }

  /**
   * Where the pre-release part sorts: a bare dev release before any pre-release (1.0.dev0 < 1.0a0),
   * then a, b, rc, then no pre-release at all.
   */
  private int preRank() {
    if (preLabel.isEmpty()) {
      return post < 0 && dev >= 0 ? -1 : 3;
    }
    return switch (preLabel) {
      case "a" -> 0;
      case "b" -> 1;
      default -> 2;
    };
  }

  private static int compareRelease(List<Long> a, List<Long> b) {
    int n = Math.max(a.size(), b.size());
    for (int i = 0; i < n; i++) {
      long x = i < a.size() ? a.get(i) : 0;
      long y = i < b.size() ? b.get(i) : 0;
      if (x != y) {
        return Long.compare(x, y);
      }
    }
    return 0;
  }

  // Numeric segments sort after alphanumeric ones and compare as numbers (PEP 440).
  private static int compareLocal(String a, String b) {
    if (a.isEmpty() || b.isEmpty()) {
      return Boolean.compare(!a.isEmpty(), !b.isEmpty());
    }
    String[] x = a.split("\\.");
    String[] y = b.split("\\.");
    for (int i = 0; i < Math.min(x.length, y.length); i++) {
      boolean xn = isDigits(x[i]);
      boolean yn = isDigits(y[i]);
      int c;
      if (xn && yn) {
        c = Long.compare(Long.parseLong(x[i]), Long.parseLong(y[i]));
      } else if (xn != yn) {
        c = xn ? 1 : -1;
      } else {
        c = x[i].compareTo(y[i]);
      }
      if (c != 0) {
        return c;
      }
    }
    return Integer.compare(x.length, y.length);
  }

  static boolean isDigits(String s) {
    if (s.isEmpty()) {
      return false;
    }
    for (int i = 0; i < s.length(); i++) {
      char ch = s.charAt(i);
      if (ch < '0' || ch > '9') {
        return false;
      }
    }
    return true;
  }

  /** Versions are equal when PEP 440 orders them equal: trailing zero segments do not count. */
  @Override
  public boolean equals(Object o) {
    return o instanceof Version v && compareTo(v) == 0;
  }

  @Override
  public int hashCode() {
    int end = release.size();
    while (end > 1 && release.get(end - 1) == 0) {
      end--;
    }
    return Objects.hash(epoch, release.subList(0, end), preLabel, preNumber, post, dev, local);
  }

  /** The normalised spelling: {@code [N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]}. */
  @Override
  public String toString() {
    return format(release.size());
  }

  /**
   * The normalised spelling without trailing zero release segments ({@code 2.0.0} gives {@code 2}):
   * one text for all spellings of an equal version.
   */
  public String canonicalString() {
    int end = release.size();
    while (end > 1 && release.get(end - 1) == 0) {
      end--;
    }
    return format(end);
  }

  private String format(int releaseSegments) {
    StringBuilder sb = new StringBuilder();
    if (epoch != 0) {
      sb.append(epoch).append('!');
    }
    for (int i = 0; i < releaseSegments; i++) {
      if (i > 0) {
        sb.append('.');
      }
      sb.append(release.get(i));
    }
    if (!preLabel.isEmpty()) {
      sb.append(preLabel).append(preNumber);
    }
    if (post >= 0) {
      sb.append(".post").append(post);
    }
    if (dev >= 0) {
      sb.append(".dev").append(dev);
    }
    if (!local.isEmpty()) {
      sb.append('+').append(local);
    }
    return sb.toString();
  }
}
