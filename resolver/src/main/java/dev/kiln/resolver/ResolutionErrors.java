package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.function.Predicate;

/**
 * Explains to the user why one {@link Resolution} fails: the project that has no usable version and
 * who needs it, and why: no such project, sdists only, no wheel for the target's Python or tags
 * (naming the tags tried), no matching version, or requirements that conflict (naming the
 * contradictions met on the way). Each message says what to change.
 */
final class ResolutionErrors {
  private final TargetEnvironment target;
  private final List<String> indexes;

  /** Direct contradictions met on the way, in order: what a conflict error reports. */
  private final Set<String> contradictions = new LinkedHashSet<>();

  ResolutionErrors(TargetEnvironment target, List<String> indexes) {
    this.target = target;
    this.indexes = indexes;
  }

  /**
   * Notes that {@code parent} requires {@code d}, which the version chosen for its project does not
   * meet, and answers that contradiction in words.
   */
  String contradiction(
      Candidate parent, Requirement d, Candidate chosen, List<Resolution.Edge> by) {
    String contradiction =
        parent.label()
            + " requires '"
            + d.canonical()
            + "', but "
            + chosen.label()
            + " was chosen for "
            + describe(by);
    contradictions.add(contradiction);
    return contradiction;
  }

  /** Notes a dependency's failure: conflicts and mismatches are what a conflict error reports. */
  void dependencyFailed(KilnException why) {
    if (why.code() == ErrorCode.PACKAGE_CONFLICT || why.code() == ErrorCode.NO_MATCHING_VERSION) {
      contradictions.add(why.getMessage());
    }
  }

  /** The search tried {@code maxAttempts} versions, the last one {@code last} of {@code name}. */
  static KilnException tooComplex(int maxAttempts, String name, Candidate last) {
    return new KilnException(
        ErrorCode.RESOLUTION_TOO_COMPLEX,
        "gave up after trying "
            + maxAttempts
            + " package versions without finding a set"
            + " that fits together (last at "
            + last.label()
            + "); pin the versions of the"
            + " main packages (e.g. '"
            + name
            + "=="
            + last.version()
            + "') to narrow the"
            + " search");
  }

  /** The requirements and who made them, e.g. {@code 'p>=2' (requested by the UDF)}. */
  static String describe(List<Resolution.Edge> edges) {
    List<String> parts = new ArrayList<>();
    for (Resolution.Edge e : edges) {
      parts.add(e.describe());
    }
    return String.join(", ", parts);
  }

  /**
   * The user-facing error for a project with no usable version.
   *
   * @param edges the requirements on it, and who made them
   * @param matchesAll whether a version meets all of them
   * @param anyCandidate whether a release meets them and has a wheel to use (exclusions aside)
   * @param excluded why each version that was tried failed
   */
  KilnException noUsableVersion(
      String name,
      ProjectInfo info,
      List<Resolution.Edge> edges,
      Predicate<Version> matchesAll,
      boolean anyCandidate,
      Map<Version, Resolution.Exclusion> excluded) {
    String who = describe(edges);
    if (!info.found()) {
      return new KilnException(
          ErrorCode.PACKAGE_NOT_FOUND,
          "no package named '"
              + name
              + "' on the package index ("
              + String.join(", ", indexes)
              + "); needed for "
              + who
              + ". Check the spelling, or add the index that has it");
    }
    boolean anyUsable = false;
    for (ProjectInfo.Release r : info.releases()) {
      anyUsable |= r.best() != null || r.yankedBest() != null;
    }
    if (!anyUsable) {
      return new KilnException(
          ErrorCode.NO_COMPATIBLE_WHEEL, unusable(name, info.releases()) + "; needed for " + who);
    }
    if (!anyCandidate) {
      // Versions that match but cannot be installed say more than "no match".
      List<ProjectInfo.Release> matching = new ArrayList<>();
      for (ProjectInfo.Release r : info.releases()) {
        if (matchesAll.test(r.version()) && r.best() == null) {
          matching.add(r);
        }
      }
      if (!matching.isEmpty()) {
        return new KilnException(
            ErrorCode.NO_COMPATIBLE_WHEEL, unusable(name, matching) + "; needed for " + who);
      }
      if (edges.size() >= 2) {
        return new KilnException(
            ErrorCode.PACKAGE_CONFLICT,
            "conflicting requirements for '"
                + name
                + "': "
                + who
                + " cannot all hold (versions"
                + " available for the target: "
                + available(info)
                + ")");
      }
      return new KilnException(
          ErrorCode.NO_MATCHING_VERSION,
          "no version of '"
              + name
              + "' matches "
              + who
              + "; versions available for the target: "
              + available(info));
    }
    Set<ErrorCode> kinds = new TreeSet<>();
    List<String> reasons = new ArrayList<>();
    for (Map.Entry<Version, Resolution.Exclusion> e : excluded.entrySet()) {
      kinds.add(e.getValue().kind());
      reasons.add(e.getValue().reason());
    }
    if (kinds.size() == 1 && !kinds.contains(ErrorCode.PACKAGE_CONFLICT)) {
      // Every version fails for the same kind of reason (e.g. a dependency without wheels).
      return new KilnException(
          kinds.iterator().next(),
          "no version of '"
              + name
              + "' can be installed (needed for "
              + who
              + "): "
              + String.join("; ", limit(reasons, 3)));
    }
    List<String> found = new ArrayList<>(contradictions);
    if (found.isEmpty()) {
      found = reasons;
    }
    return new KilnException(
        ErrorCode.PACKAGE_CONFLICT,
        "the requirements conflict: no version of '"
            + name
            + "' (needed for "
            + who
            + ") fits with the rest. "
            + String.join("; ", limit(found, 5)));
  }

  /** Why none of these releases can be installed: sdists only, Python version, or tags. */
  private String unusable(String name, List<ProjectInfo.Release> releases) {
    if (releases.isEmpty()) {
      return "the index lists no files for '" + name + "'";
    }
    boolean allSdist = releases.stream().allMatch(r -> r.unusable().startsWith("only an sdist"));
    if (allSdist) {
      return "'"
          + name
          + "' has no wheel, only source distributions (sdists, e.g. "
          + releases.get(0).files().get(0)
          + "); Kiln installs wheels only: use a version or"
          + " an index that publishes wheels";
    }
    boolean allPython = releases.stream().allMatch(r -> r.unusable().startsWith("requires Python"));
    List<String> problems = new ArrayList<>();
    for (ProjectInfo.Release r : releases) {
      problems.add(name + " " + r.version() + ": " + r.unusable());
    }
    if (allPython) {
      return "no version of '"
          + name
          + "' supports the target's Python "
          + target.pythonVersion()
          + ": "
          + String.join("; ", limit(problems, 5));
    }
    return "no wheel of '"
        + name
        + "' can run on the target ("
        + target.describe()
        + "): "
        + String.join("; ", limit(problems, 5))
        + ". "
        + tagsTried();
  }

  private String tagsTried() {
    List<String> tags = target.compatibleTags();
    return "Tags tried, most preferred first: "
        + String.join(", ", tags.subList(0, 3))
        + ", ..., "
        + tags.get(tags.size() - 1)
        + " ("
        + tags.size()
        + " tags)";
  }

  private static String available(ProjectInfo info) {
    List<String> versions = new ArrayList<>();
    for (ProjectInfo.Release r : info.releases()) {
      if (r.best() != null) {
        versions.add(r.version().toString());
      }
    }
    return versions.isEmpty() ? "none" : String.join(", ", limit(versions, 12));
  }

  private static List<String> limit(List<String> items, int n) {
    if (items.size() <= n) {
      return items;
    }
    List<String> out = new ArrayList<>(items.subList(0, n));
    out.add("and " + (items.size() - n) + " more");
    return out;
  }
}
