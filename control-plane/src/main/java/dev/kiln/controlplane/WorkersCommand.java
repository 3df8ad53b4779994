package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.proto.resource.Worker;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.List;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kiln workers}: a tenant's workers, as Databend's SHOW WORKERS lists them. */
@Command(
    name = "workers",
    header = "Lists a tenant's workers, as Databend's SHOW WORKERS does.",
    footer = {
      "%nExamples:",
      "  kiln workers --tenant acme",
      "  kiln workers --tenant acme --json",
      "%nExit status:",
      "  0  done",
      "  1  the server refused or failed (its code and message on stderr)",
      "  2  bad usage (a missing file, a malformed flag)"
    },
    mixinStandardHelpOptions = true,
    description = {
      "Lists a tenant's workers (name, tags, options, created and updated) from a Kiln server,",
      "as Databend's SHOW WORKERS does."
    })
final class WorkersCommand implements Callable<Integer> {
  private static final ObjectMapper JSON = new ObjectMapper();

  @Option(
      names = "--server",
      paramLabel = "HOST:PORT",
      defaultValue = "127.0.0.1:50051",
      description = "Kiln's gRPC port (default ${DEFAULT-VALUE}).")
  String server;

  @Option(
      names = "--tenant",
      paramLabel = "TENANT",
      defaultValue = "default",
      description = "The tenant (default ${DEFAULT-VALUE}).")
  String tenant;

  @Option(names = "--json", description = "Print JSON for scripts instead of a table.")
  boolean json;

  @Override
  public Integer call() throws Exception {
    List<Worker> workers;
    try (DatabendClient client = new DatabendClient(server)) {
      workers = client.listWorkers(tenant, Duration.ofSeconds(5));
    } catch (StatusRuntimeException e) {
      System.err.println(
          "kiln workers: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      return 1;
    }
    if (json) {
      ArrayNode out = JSON.createArrayNode();
      for (Worker w : workers) {
        ObjectNode n = out.addObject();
        n.put("name", w.getName());
        n.set("tags", JSON.valueToTree(new TreeMap<>(w.getTagsMap())));
        n.set("options", JSON.valueToTree(new TreeMap<>(w.getOptionsMap())));
        n.put("created_at", w.getCreatedAt());
        n.put("updated_at", w.getUpdatedAt());
      }
      System.out.println(JSON.writerWithDefaultPrettyPrinter().writeValueAsString(out));
      return 0;
    }
    System.out.printf("%-24s %-30s %-50s %s%n", "NAME", "TAGS", "OPTIONS", "UPDATED");
    for (Worker w : workers) {
      System.out.printf(
          "%-24s %-30s %-50s %s%n",
          w.getName(),
          JSON.writeValueAsString(new TreeMap<>(w.getTagsMap())),
          JSON.writeValueAsString(new TreeMap<>(w.getOptionsMap())),
          w.getUpdatedAt());
    }
    return 0;
  }
}
