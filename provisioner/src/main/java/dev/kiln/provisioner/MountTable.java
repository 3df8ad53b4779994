package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/** The host's mount table as this process sees it ({@code /proc/self/mountinfo}). */
final class MountTable {
  private static final Path MOUNTINFO = Path.of("/proc/self/mountinfo");

  /** One line of mountinfo: where it is mounted, the file system type and its super options. */
  record Mount(Path mountPoint, String fsType, String superOptions) {}

  private MountTable() {}

  static List<Mount> read() throws IOException {
    return parse(Files.readAllLines(MOUNTINFO));
  }

  static List<Mount> parse(List<String> lines) {
    List<Mount> mounts = new ArrayList<>();
    for (String line : lines) {
      String[] f = line.split(" ");
      int dash = -1;
      for (int i = 6; i < f.length; i++) {
        if (f[i].equals("-")) {
          dash = i;
          break;
        }
      }
      if (f.length < 5 || dash < 0) {
        continue;
      }
      String fsType = dash + 1 < f.length ? f[dash + 1] : "";
      String superOptions = dash + 3 < f.length ? f[dash + 3] : "";
      mounts.add(new Mount(Path.of(unescape(f[4])), fsType, superOptions));
    }
    return mounts;
  }

  /** Mount points at or below {@code dir}, deepest first (the order to unmount them in). */
  static List<Path> mountPointsUnder(Path dir) throws IOException {
    return mountPointsUnder(read(), dir);
  }

  static List<Path> mountPointsUnder(List<Mount> mounts, Path dir) {
    Path base = dir.toAbsolutePath().normalize();
    return mounts.stream()
        .map(Mount::mountPoint)
        .filter(p -> p.startsWith(base))
        .distinct()
        .sorted(Comparator.comparingInt(Path::getNameCount).reversed())
        .toList();
  }

  static boolean isMountPoint(Path p) throws IOException {
    Path abs = p.toAbsolutePath().normalize();
    return read().stream().anyMatch(m -> m.mountPoint().equals(abs));
  }

  /** The kernel writes space, tab, newline and backslash in paths as octal escapes. */
  static String unescape(String s) {
    if (s.indexOf('\\') < 0) {
      return s;
    }
    StringBuilder b = new StringBuilder(s.length());
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '\\' && isOctal(s, i + 1)) {
        b.append((char) Integer.parseInt(s.substring(i + 1, i + 4), 8));
        i += 3;
      } else {
        b.append(c);
      }
    }
    return b.toString();
  }

  private static boolean isOctal(String s, int from) {
    if (from + 3 > s.length()) {
      return false;
    }
    for (int i = from; i < from + 3; i++) {
      char c = s.charAt(i);
      if (c < '0' || c > '7') {
        return false;
      }
    }
    return true;
  }
}
