package dev.kiln.controlplane;

import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Reads the values of Kiln's settings (ports, numbers, sizes, durations) with clear errors. */
final class ConfigValues {
  private ConfigValues() {}

  private static final Pattern SIZE = Pattern.compile("(\\d+)\\s*([kmgt]i?b?|b)?");
  private static final Pattern DURATION = Pattern.compile("(\\d+)\\s*(ms|s|m|h)?");

  static int port(String key, String value) {
    try {
      return Integer.parseInt(value.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(key + " must be a port number, got '" + value + "'");
    }
  }

  static double number(String key, String value) {
    try {
      return Double.parseDouble(value.trim());
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException(key + " must be a number, got '" + value + "'");
    }
  }

  /** Parses sizes like {@code 512MiB}, {@code 2g}, {@code 1048576}. */
  static long size(String key, String value) {
    Matcher m = SIZE.matcher(value.trim().toLowerCase(Locale.ROOT));
    if (!m.matches()) {
      throw new IllegalArgumentException(
          key + " must be a size such as 512MiB or 2GiB, got '" + value + "'");
    }
    long n = Long.parseLong(m.group(1));
    String unit = m.group(2) == null ? "b" : m.group(2);
    int shift =
        switch (unit.charAt(0)) {
          case 'k' -> 10;
          case 'm' -> 20;
          case 'g' -> 30;
          case 't' -> 40;
          default -> 0;
        };
    return n << shift;
  }

  /** {@code share} of the host's memory ({@code MemTotal}). */
  static long defaultSandboxMemory(double share) {
    long total = 0;
    try {
      for (String line : java.nio.file.Files.readAllLines(Path.of("/proc/meminfo"))) {
        if (line.startsWith("MemTotal:")) {
          total = Long.parseLong(line.replaceAll("[^0-9]", "")) << 10;
        }
      }
    } catch (java.io.IOException | NumberFormatException e) {
      total = Runtime.getRuntime().maxMemory() * 4; // not Linux: a guess, overridden by the flag
    }
    return (long) (total * share);
  }

  /** Parses durations like {@code 300s}, {@code 5m}, {@code 250ms} (bare numbers are seconds). */
  static Duration duration(String key, String value) {
    Matcher m = DURATION.matcher(value.trim().toLowerCase(Locale.ROOT));
    if (!m.matches()) {
      throw new IllegalArgumentException(
          key + " must be a duration such as 300s, 5m or 250ms, got '" + value + "'");
    }
    long n = Long.parseLong(m.group(1));
    String unit = m.group(2) == null ? "s" : m.group(2);
    return switch (unit) {
      case "ms" -> Duration.ofMillis(n);
      case "m" -> Duration.ofMinutes(n);
      case "h" -> Duration.ofHours(n);
      default -> Duration.ofSeconds(n);
    };
  }
}
