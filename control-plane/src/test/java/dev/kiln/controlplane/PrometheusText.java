package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A page of Prometheus' text format as a server's {@code /metrics} returns it: its families (type
 * and help) and the names of its samples; and the naming conventions Prometheus documents, checked
 * on Kiln's families.
 */
final class PrometheusText {
  private static final Pattern NAME = Pattern.compile("[a-zA-Z_:][a-zA-Z0-9_:]*");
  private static final Pattern KILN_METRIC = Pattern.compile("\\bkiln_[a-z0-9_]+");
  // Units that are not Prometheus' base units (seconds, bytes, ratios): never in a name.
  private static final Set<String> NON_BASE_UNITS =
      Set.of(
          "ms",
          "millis",
          "milliseconds",
          "micros",
          "microseconds",
          "nanos",
          "nanoseconds",
          "minutes",
          "hours",
          "kb",
          "mb",
          "gb",
          "kib",
          "mib",
          "gib",
          "percent");

  final Map<String, String> types = new TreeMap<>();
  final Map<String, String> help = new TreeMap<>();
  final Set<String> samples = new TreeSet<>();

  static PrometheusText parse(String page) {
    PrometheusText t = new PrometheusText();
    for (String line : page.split("\n")) {
      if (line.startsWith("# TYPE ")) {
        String[] f = line.split(" ", 4);
        t.types.put(f[2], f[3].strip());
      } else if (line.startsWith("# HELP ")) {
        String[] f = line.split(" ", 4);
        t.help.put(f[2], f.length > 3 ? f[3].strip() : "");
      } else if (!line.isBlank() && !line.startsWith("#")) {
        Matcher m = NAME.matcher(line);
        if (m.lookingAt()) {
          t.samples.add(m.group());
        }
      }
    }
    return t;
  }

  /** Every {@code kiln_*} metric a Grafana dashboard's panels query. */
  static Set<String> dashboardMetrics(Path dashboard) throws IOException {
    JsonNode root = KilnTestSupport.JSON.readTree(Files.readString(dashboard));
    Set<String> names = new TreeSet<>();
    for (JsonNode panel : root.path("panels")) {
      for (JsonNode target : panel.path("targets")) {
        Matcher m = KILN_METRIC.matcher(target.path("expr").asText());
        while (m.find()) {
          names.add(m.group());
        }
      }
    }
    return names;
  }

  /** Where Kiln's families break Prometheus' naming conventions; empty when none does. */
  List<String> kilnConventionViolations() {
    List<String> out = new ArrayList<>();
    for (var e : types.entrySet()) {
      String name = e.getKey();
      String type = e.getValue();
      if (!name.startsWith("kiln_")) {
        continue;
      }
      if (!name.matches("[a-z_][a-z0-9_]*")) {
        out.add(name + ": not snake_case");
      }
      if (type.equals("counter") != name.endsWith("_total")) {
        out.add(
            name
                + ": a "
                + type
                + (type.equals("counter") ? " must" : " must not")
                + " end in _total");
      }
      String base = name.replaceAll("_(total|max|count|sum|bucket)$", "");
      for (String part : base.split("_")) {
        if (NON_BASE_UNITS.contains(part)) {
          out.add(name + ": unit '" + part + "' is not a base unit (seconds, bytes)");
        }
      }
      for (String unit : List.of("seconds", "bytes")) {
        if (base.contains("_" + unit + "_")) {
          out.add(name + ": the unit '" + unit + "' goes last");
        }
      }
      if (help.getOrDefault(name, "").isBlank()) {
        out.add(name + ": no HELP text");
      }
    }
    return out;
  }
}
