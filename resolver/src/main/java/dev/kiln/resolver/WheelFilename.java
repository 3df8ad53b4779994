package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;

/**
 * The parts of a wheel's file name ({@code name-version[-build]-python-abi-platform.whl}, PEP 427 /
 * the binary distribution format), with compressed tag sets expanded. The one parser of wheel file
 * names: the resolver skips index files that are not wheels ({@link #parse}), the image builder
 * refuses them, saying why ({@link #of}).
 *
 * @param filename the file name as given
 * @param distribution the distribution name as the file name spells it
 * @param name the normalised project name
 * @param version the version
 * @param build the build tag, "" when absent
 * @param tags every {@code python-abi-platform} tag the file declares
 */
public record WheelFilename(
    String filename,
    String distribution,
    String name,
    Version version,
    String build,
    List<String> tags) {

  private static final String FORM =
      "{distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl";

  /**
   * Parses a wheel's file name.
   *
   * @throws KilnException {@link ErrorCode#PACKAGES_UNRESOLVABLE} when it is not one; the message
   *     names the file and says what is wrong with the name
   */
  public static WheelFilename of(String filename) throws KilnException {
    Object parsed = parts(filename);
    if (parsed instanceof WheelFilename w) {
      return w;
    }
    throw new KilnException(ErrorCode.PACKAGES_UNRESOLVABLE, (String) parsed);
  }

  /** Parses a wheel file name; null when it is not one. */
  static WheelFilename parse(String filename) {
    if (filename == null || !filename.endsWith(".whl")) {
      return null; // most often an sdist: no need to say why
    }
    return parts(filename) instanceof WheelFilename w ? w : null;
  }

  /** The parts of {@code filename}, or (a String) why it is not a wheel file name. */
  private static Object parts(String filename) {
    if (filename == null
        || !filename.endsWith(".whl")
        || filename.contains("/")
        || filename.contains("\\")) {
      return "'"
          + filename
          + "' is not a wheel file name; expected "
          + FORM
          + ", e.g. six-1.17.0-py2.py3-none-any.whl";
    }
    String[] parts = filename.substring(0, filename.length() - 4).split("-", -1);
    if (parts.length != 5 && parts.length != 6) {
      return "wheel file name '"
          + filename
          + "' has "
          + parts.length
          + " dash-separated parts, expected 5 or 6: "
          + FORM;
    }
    for (String part : parts) {
      if (part.isEmpty()) {
        return "wheel file name '" + filename + "' has an empty part; it is not a valid wheel name";
      }
    }
    Version v = Version.tryParse(parts[1]);
    if (v == null) {
      return "wheel file name '"
          + filename
          + "' has version '"
          + parts[1]
          + "', which is not a valid version (PEP 440)";
    }
    String build = parts.length == 6 ? parts[2] : "";
    if (!build.isEmpty() && !Character.isDigit(build.charAt(0))) {
      return "wheel file name '"
          + filename
          + "' has build tag '"
          + build
          + "', which does not start with a digit";
    }
    int t = parts.length - 3;
    List<String> tags = new ArrayList<>();
    for (String py : parts[t].split("\\.")) {
      for (String abi : parts[t + 1].split("\\.")) {
        for (String plat : parts[t + 2].split("\\.")) {
          tags.add(py + "-" + abi + "-" + plat);
        }
      }
    }
    return new WheelFilename(
        filename, parts[0], Requirement.normalizeName(parts[0]), v, build, List.copyOf(tags));
  }

  /** The version of an sdist of {@code project} ({@code name-version.tar.gz}); null otherwise. */
  static Version sdistVersion(String project, String filename) {
    String stem = null;
    for (String ext : List.of(".tar.gz", ".zip", ".tar.bz2", ".tgz", ".tar.xz", ".tar")) {
      if (filename.toLowerCase(java.util.Locale.ROOT).endsWith(ext)) {
        stem = filename.substring(0, filename.length() - ext.length());
        break;
      }
    }
    if (stem == null) {
      return null;
    }
    // Old sdists keep dashes in the name (python-dateutil-2.8.2): try every split point.
    for (int i = stem.indexOf('-'); i > 0; i = stem.indexOf('-', i + 1)) {
      if (Requirement.normalizeName(stem.substring(0, i)).equals(project)) {
        return Version.tryParse(stem.substring(i + 1));
      }
    }
    return null;
  }

  /** The build tag's leading number (0 when absent): higher builds of one version win. */
  long buildNumber() {
    int i = 0;
    while (i < build.length() && Character.isDigit(build.charAt(i))) {
      i++;
    }
    try {
      return i == 0 ? 0 : Long.parseLong(build.substring(0, i));
    } catch (NumberFormatException e) {
      return 0;
    }
  }
}
