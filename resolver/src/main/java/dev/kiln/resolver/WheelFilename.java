package dev.kiln.resolver;

import java.util.ArrayList;
import java.util.List;

/**
 * The parts of a wheel's file name ({@code name-version[-build]-python-abi-platform.whl}, PEP 427 /
 * the binary distribution format), with compressed tag sets expanded.
 *
 * @param name the normalised project name
 * @param version the version
 * @param build the build tag, "" when absent
 * @param tags every {@code python-abi-platform} tag the file declares
 */
record WheelFilename(String name, Version version, String build, List<String> tags) {

  /** Parses a wheel file name; null when it is not one. */
  static WheelFilename parse(String filename) {
    if (!filename.endsWith(".whl")) {
      return null;
    }
    String[] parts = filename.substring(0, filename.length() - 4).split("-");
    if (parts.length != 5 && parts.length != 6) {
      return null;
    }
    Version v = Version.tryParse(parts[1]);
    if (v == null) {
      return null;
    }
    String build = parts.length == 6 ? parts[2] : "";
    if (!build.isEmpty() && !Character.isDigit(build.charAt(0))) {
      return null;
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
    return new WheelFilename(Requirement.normalizeName(parts[0]), v, build, List.copyOf(tags));
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
