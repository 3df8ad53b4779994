package dev.kiln.resolver;

import java.net.URI;
import java.util.List;

/**
 * A project's files as one index lists them.
 *
 * @param name the normalised project name
 * @param index the index (without credentials) that had the project
 * @param files every file listed, in the index's order
 */
record ProjectPage(String name, URI index, List<DistFile> files) {
  ProjectPage {
    files = List.copyOf(files);
  }
}
