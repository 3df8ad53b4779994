package dev.kiln.resolver;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The parts of a distribution's core metadata ({@code METADATA}, an RFC 822 style header block)
 * that resolution needs.
 *
 * @param name the {@code Name} field as written
 * @param version the {@code Version} field as written
 * @param requiresPython the {@code Requires-Python} field, "" when absent
 * @param requiresDist every {@code Requires-Dist} line, in order
 */
record CoreMetadata(String name, String version, String requiresPython, List<String> requiresDist) {
  CoreMetadata {
    requiresDist = List.copyOf(requiresDist);
  }

  /** Reads the header block; the description after the first blank line is ignored. */
  static CoreMetadata parse(String text) {
    String name = "";
    String version = "";
    String requiresPython = "";
    List<String> requires = new ArrayList<>();
    List<String[]> headers = new ArrayList<>();
    for (String line : text.split("\r?\n", -1)) {
      if (line.isEmpty()) {
        break;
      }
      if ((line.charAt(0) == ' ' || line.charAt(0) == '\t') && !headers.isEmpty()) {
        String[] last = headers.get(headers.size() - 1);
        last[1] = last[1] + " " + line.strip(); // a folded header continues the previous one
        continue;
      }
      int colon = line.indexOf(':');
      if (colon > 0) {
        headers.add(
            new String[] {line.substring(0, colon).strip(), line.substring(colon + 1).strip()});
      }
    }
    for (String[] h : headers) {
      switch (h[0].toLowerCase(Locale.ROOT)) {
        case "name" -> name = h[1];
        case "version" -> version = h[1];
        case "requires-python" -> requiresPython = h[1];
        case "requires-dist" -> requires.add(h[1]);
        default -> {}
      }
    }
    return new CoreMetadata(name, version, requiresPython, requires);
  }
}
