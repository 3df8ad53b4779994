package dev.kiln.resolver;

import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Every version a project has on its index and, for each, the wheel to use on the target or why
 * there is none.
 *
 * @param name normalised project name
 * @param found whether any index has the project
 * @param releases newest first
 */
record ProjectInfo(String name, boolean found, List<Release> releases) {

  /**
   * One version.
   *
   * @param version the version
   * @param best the most preferred compatible, non-yanked wheel, or null
   * @param yankedBest the most preferred compatible wheel among yanked ones (usable only when
   *     pinned with {@code ==}), or null
   * @param unusable why {@code best} is null ("" when it is not)
   * @param files every file of this version
   */
  record Release(
      Version version, DistFile best, DistFile yankedBest, String unusable, List<String> files) {}

  static ProjectInfo notFound(String name) {
    return new ProjectInfo(name, false, List.of());
  }

  /** Groups a page's files by version and picks each version's best wheel for the target. */
  static ProjectInfo of(ProjectPage page, Map<String, Integer> tagRank, Version python) {
    Map<Version, List<DistFile>> byVersion = new TreeMap<>(Comparator.reverseOrder());
    for (DistFile f : page.files()) {
      WheelFilename w = WheelFilename.parse(f.filename());
      Version v;
      if (w != null) {
        if (!w.name().equals(page.name())) {
          continue; // a file of another project on this page is not a candidate
        }
        v = w.version();
      } else {
        v = WheelFilename.sdistVersion(page.name(), f.filename());
      }
      if (v != null) {
        byVersion.computeIfAbsent(v, k -> new ArrayList<>()).add(f);
      }
    }
    List<Release> releases = new ArrayList<>();
    for (Map.Entry<Version, List<DistFile>> e : byVersion.entrySet()) {
      releases.add(release(e.getKey(), e.getValue(), tagRank, python));
    }
    return new ProjectInfo(page.name(), true, List.copyOf(releases));
  }

  private static Release release(
      Version v, List<DistFile> files, Map<String, Integer> tagRank, Version python) {
    DistFile best = null;
    DistFile yankedBest = null;
    int bestRank = Integer.MAX_VALUE;
    int yankedRank = Integer.MAX_VALUE;
    long bestBuild = -1;
    long yankedBuild = -1;
    boolean anyWheel = false;
    String pythonProblem = "";
    List<String> names = new ArrayList<>();
    for (DistFile f : files.stream().sorted(Comparator.comparing(DistFile::filename)).toList()) {
      names.add(f.filename());
      WheelFilename w = WheelFilename.parse(f.filename());
      if (w == null) {
        continue;
      }
      anyWheel = true;
      int rank = Integer.MAX_VALUE;
      for (String t : w.tags()) {
        rank = Math.min(rank, tagRank.getOrDefault(t, Integer.MAX_VALUE));
      }
      if (rank == Integer.MAX_VALUE) {
        continue;
      }
      if (f.requiresPython() != null && !requiresPythonAllows(f.requiresPython(), python)) {
        pythonProblem = "requires Python " + f.requiresPython().strip();
        continue;
      }
      long build = w.buildNumber();
      if (f.yanked()) {
        if (rank < yankedRank || (rank == yankedRank && build > yankedBuild)) {
          yankedBest = f;
          yankedRank = rank;
          yankedBuild = build;
        }
      } else if (rank < bestRank || (rank == bestRank && build > bestBuild)) {
        best = f;
        bestRank = rank;
        bestBuild = build;
      }
    }
    String unusable = "";
    if (best == null) {
      if (yankedBest != null) {
        unusable = "yanked";
      } else if (!pythonProblem.isEmpty()) {
        unusable = pythonProblem;
      } else if (!anyWheel) {
        unusable = "only an sdist (" + String.join(", ", names) + ")";
      } else {
        unusable = "no compatible wheel (has " + String.join(", ", names) + ")";
      }
    }
    return new Release(v, best, yankedBest, unusable, List.copyOf(names));
  }

  /** Requires-Python as an index or METADATA states it; an invalid value does not exclude. */
  static boolean requiresPythonAllows(String requiresPython, Version python) {
    try {
      return SpecifierSet.parse(requiresPython).contains(python, true);
    } catch (KilnException e) {
      return true; // pip ignores an unparseable Requires-Python rather than failing
    }
  }

  /** Which versions exist but have only sdists, for messages. */
  List<Version> sdistOnlyVersions() {
    List<Version> out = new ArrayList<>();
    for (Release r : releases) {
      if (r.best() == null && r.unusable().startsWith("only an sdist")) {
        out.add(r.version());
      }
    }
    return out;
  }

  /** Lookup by version, for messages. */
  Map<Version, Release> byVersion() {
    Map<Version, Release> m = new HashMap<>();
    releases.forEach(r -> m.put(r.version(), r));
    return m;
  }
}
