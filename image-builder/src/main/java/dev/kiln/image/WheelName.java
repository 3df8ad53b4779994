package dev.kiln.image;

import java.util.Locale;

/**
 * The parts of a wheel file name (PEP 427, binary distribution format): {@code
 * {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl}.
 */
record WheelName(
    String filename,
    String distribution,
    String version,
    String pythonTag,
    String abiTag,
    String platformTag) {

  static WheelName parse(String filename) throws InvalidWheelException {
    if (filename == null
        || !filename.endsWith(".whl")
        || filename.contains("/")
        || filename.contains("\\")) {
      throw new InvalidWheelException(
          "'"
              + filename
              + "' is not a wheel file name; expected"
              + " {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl, e.g."
              + " six-1.17.0-py2.py3-none-any.whl");
    }
    String[] parts = filename.substring(0, filename.length() - 4).split("-", -1);
    if (parts.length != 5 && parts.length != 6) {
      throw new InvalidWheelException(
          "wheel file name '"
              + filename
              + "' has "
              + parts.length
              + " dash-separated parts, expected 5 or 6:"
              + " {distribution}-{version}(-{build})?-{python}-{abi}-{platform}.whl");
    }
    for (String part : parts) {
      if (part.isEmpty()) {
        throw new InvalidWheelException(
            "wheel file name '" + filename + "' has an empty part; it is not a valid wheel name");
      }
    }
    int n = parts.length;
    return new WheelName(filename, parts[0], parts[1], parts[n - 3], parts[n - 2], parts[n - 1]);
  }

  /** PEP 503 normalised name: lower case, each run of {@code -_.} as one dash. */
  static String canonical(String name) {
    return name.replaceAll("[-_.]+", "-").toLowerCase(Locale.ROOT);
  }
}
