package dev.kiln.resolver;

import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The local PEP 503 mirror of real wheels that pip on the test machines is configured with, found
 * the way pip finds it ({@code pip config list}: index-url, extra-index-url, find-links).
 */
public final class PipMirror {
  private static final Pattern SETTING =
      Pattern.compile("^[^.]*\\.(index-url|extra-index-url|find-links)='(.*)'$");

  private PipMirror() {}

  /**
   * The file:// indexes of the mirror, in pip's order; fails with instructions when pip has none,
   * since the real-package tests need it.
   */
  public static List<URI> fileIndexes() throws IOException, InterruptedException {
    Process p =
        new ProcessBuilder("python3", "-m", "pip", "config", "list")
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IllegalStateException("'python3 -m pip config list' failed: " + out);
    }
    List<URI> indexes = new ArrayList<>();
    for (String line : out.split("\n")) {
      Matcher m = SETTING.matcher(line.strip());
      if (!m.matches() || m.group(1).equals("find-links")) {
        continue;
      }
      for (String url : m.group(2).split("\\s+")) {
        if (url.startsWith("file:")
            && Files.isDirectory(Path.of(URI.create(url)))
            && !indexes.contains(URI.create(url))) {
          indexes.add(URI.create(url));
        }
      }
    }
    if (indexes.isEmpty()) {
      throw new IllegalStateException(
          "pip is not configured with a local file:// package index ('pip config list' shows"
              + " none). These tests resolve real wheels (numpy, pandas, humanize) from such a"
              + " PEP 503 mirror, e.g. 'pip config set global.extra-index-url"
              + " file:///opt/pypi/simple'. pip config list said:\n"
              + out);
    }
    return List.copyOf(indexes);
  }
}
