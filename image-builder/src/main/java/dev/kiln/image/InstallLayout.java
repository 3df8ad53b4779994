package dev.kiln.image;

import dev.kiln.resolver.TargetEnvironment;
import java.util.Objects;

/**
 * Where a wheel's parts go in the image: the install scheme of the base image's Python ({@code
 * sysconfig.get_paths()}) and its interpreter.
 *
 * <p>For the default base (Debian bookworm, python3 3.11.2) {@code sysconfig} says: purelib and
 * platlib {@code /usr/local/lib/python3.11/dist-packages} (on {@code sys.path}, {@code .pth} files
 * processed), scripts {@code /usr/local/bin}, data {@code /usr/local}, interpreter {@code
 * /usr/bin/python3}.
 *
 * @param purelib site-packages directory for pure-Python files ({@code Root-Is-Purelib: true} roots
 *     and {@code .data/purelib})
 * @param platlib site-packages directory for platform-specific files
 * @param scripts directory for {@code .data/scripts} and generated entry-point scripts
 * @param data prefix for {@code .data/data}
 * @param headers directory under which {@code .data/headers} go, in a subdirectory named after the
 *     distribution (as pip does)
 * @param interpreter the Python that scripts run with: their {@code #!} line
 */
public record InstallLayout(
    String purelib,
    String platlib,
    String scripts,
    String data,
    String headers,
    String interpreter) {
  public InstallLayout {
    purelib = absolute("purelib", purelib);
    platlib = absolute("platlib", platlib);
    scripts = absolute("scripts", scripts);
    data = absolute("data", data);
    headers = absolute("headers", headers);
    interpreter = absolute("interpreter", interpreter);
    if (interpreter.equals("/") || interpreter.chars().anyMatch(Character::isWhitespace)) {
      throw new IllegalArgumentException(
          "interpreter '"
              + interpreter
              + "' cannot be a #! line; give the absolute path of the base image's python, without"
              + " spaces");
    }
  }

  /** Where {@code target}'s Python installs things (as its {@code sysconfig} reports). */
  public static InstallLayout of(TargetEnvironment target) {
    return new InstallLayout(
        target.purelib(),
        target.platlib(),
        target.scripts(),
        target.data(),
        target.data() + "/include/python" + target.pythonMinor(),
        target.interpreter());
  }

  /** Checks an absolute, normalised POSIX path, and drops a trailing slash. */
  private static String absolute(String what, String path) {
    Objects.requireNonNull(path, what);
    String p =
        path.length() > 1 && path.endsWith("/") ? path.substring(0, path.length() - 1) : path;
    boolean normal =
        p.startsWith("/")
            && !p.contains("//")
            && !p.contains("\0")
            && !p.contains("\n")
            && (p.equals("/")
                || java.util.Arrays.stream(p.substring(1).split("/", -1))
                    .noneMatch(s -> s.isEmpty() || s.equals(".") || s.equals("..")));
    if (!normal) {
      throw new IllegalArgumentException(
          "install layout "
              + what
              + " '"
              + path
              + "' is not an absolute, normalised path; give the path sysconfig reports in the base"
              + " image, e.g. /usr/local/lib/python3.11/dist-packages");
    }
    return p;
  }
}
