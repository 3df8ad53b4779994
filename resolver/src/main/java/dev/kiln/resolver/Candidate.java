package dev.kiln.resolver;

/**
 * A version of a project together with the wheel chosen for the target.
 *
 * @param name normalised project name
 * @param version the version
 * @param file the wheel
 */
record Candidate(String name, Version version, DistFile file) {
  /** {@code name 1.2.3}, how messages name a candidate. */
  String label() {
    return name + " " + version;
  }
}
