package dev.kiln.image;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Collections;
import java.util.HashSet;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipFile;

/**
 * The modules a wheel installs at the top of site-packages, as {@code import NAME} finds them:
 * regular packages (a directory with {@code __init__.py}), modules ({@code NAME.py}) and extension
 * modules ({@code NAME.*.so}). Private names ({@code _x}), test and documentation directories,
 * namespace packages and what {@code .data} installs elsewhere are left out: these are the names a
 * UDF imports, which a runner may import ahead of it.
 */
public final class WheelModules {
  private static final Pattern IDENTIFIER = Pattern.compile("[A-Za-z][A-Za-z0-9_]*");
  private static final Set<String> NOT_IMPORTED =
      Set.of("test", "tests", "testing", "doc", "docs", "example", "examples", "benchmarks");

  private WheelModules() {}

  /** The top-level modules of the wheel at {@code wheel}, sorted. */
  public static Set<String> topLevel(Path wheel) throws IOException {
    Set<String> dirs = new HashSet<>();
    Set<String> modules = new TreeSet<>();
    try (ZipFile zip = ZipFile.builder().setPath(wheel).get()) {
      for (ZipArchiveEntry e : Collections.list(zip.getEntries())) {
        String name = e.getName();
        int slash = name.indexOf('/');
        if (slash < 0) {
          module(name).ifPresent(modules::add);
        } else if (name.substring(slash + 1).equals("__init__.py")) {
          dirs.add(name.substring(0, slash));
        }
      }
    }
    for (String d : dirs) {
      if (importable(d)) {
        modules.add(d);
      }
    }
    return Collections.unmodifiableSet(modules);
  }

  private static Optional<String> module(String file) {
    String stem;
    if (file.endsWith(".py")) {
      stem = file.substring(0, file.length() - 3);
    } else if (file.endsWith(".so")) {
      int dot = file.indexOf('.');
      stem = file.substring(0, dot);
    } else {
      return Optional.empty();
    }
    return importable(stem) ? Optional.of(stem) : Optional.empty();
  }

  private static boolean importable(String name) {
    return IDENTIFIER.matcher(name).matches() && !NOT_IMPORTED.contains(name);
  }
}
