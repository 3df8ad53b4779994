package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import picocli.CommandLine.Command;

/** {@code kiln ps}: the sandboxes a Kiln server runs, for SREs. */
@Command(
    name = "ps",
    header = "Lists the sandboxes a server runs, and those started ahead of need.",
    footer = {
      "%nExamples:",
      "  kiln ps",
      "  kiln ps --admin 10.0.0.5:9090",
      "%nExit status:",
      "  0  done",
      "  1  the server refused or failed (its code and message on stderr)",
      "  2  bad usage (a missing file, a malformed flag)"
    },
    mixinStandardHelpOptions = true,
    description = {
      "Lists every UDF sandbox a Kiln server runs or is starting: tenant, worker or UDF, key,",
      "state (starting, busy, idle, failed, stopping), age, idle time, CPUs, memory use and",
      "limit, and calls; then the sandboxes started ahead of need (the warm pool, and a zygote",
      "per package set with its packages), state ready."
    })
final class PsCommand extends AdminCommand {
  private static final ObjectMapper JSON = new ObjectMapper();

  @Override
  String fetch(String url) throws AdminClient.CommandFailure {
    return AdminClient.get("kiln ps", url, "/sandboxes");
  }

  @Override
  void render(String body) throws Exception {
    System.out.printf(
        "%-12s %-20s %-12s %-9s %7s %7s %5s %-17s %8s%n",
        "TENANT", "WORKER/UDF", "KEY", "STATE", "AGE", "IDLE", "CPUS", "MEMORY", "CALLS");
    for (JsonNode n : JSON.readTree(body)) {
      String name =
          n.path("worker").isNull()
              ? n.path("handler").asText()
              : n.path("worker").asText() + "/" + n.path("handler").asText();
      System.out.printf(
          "%-12s %-20s %-12s %-9s %7s %7s %5s %-17s %8d%n",
          n.path("tenant").isNull() ? "-" : n.path("tenant").asText(),
          name,
          n.path("key").isNull() ? "-" : n.path("key").asText().substring(0, 12),
          n.path("state").asText(),
          duration(n.path("age_seconds")),
          duration(n.path("idle_seconds")),
          n.path("cpus").asText(),
          (n.path("memory_bytes").isNull() ? "-" : mib(n.path("memory_bytes").asLong()))
              + " / "
              + mib(n.path("memory_limit_bytes").asLong()),
          n.path("calls").asLong());
    }
  }

  private static String mib(long bytes) {
    return (bytes >> 20) + "Mi";
  }

  /** {@code 42s}, {@code 7m}, {@code 3h}, {@code 2d}; {@code -} when unknown. */
  static String duration(JsonNode seconds) {
    if (seconds.isNull() || seconds.isMissingNode()) {
      return "-";
    }
    long s = seconds.asLong();
    if (s < 120) {
      return s + "s";
    }
    if (s < 7200) {
      return (s / 60) + "m";
    }
    return s < 172800 ? (s / 3600) + "h" : (s / 86400) + "d";
  }
}
