package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.grpc.StatusRuntimeException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kiln apply}: calls ApplyUdfResource the way Databend does and prints the answer. */
@Command(
    name = "apply",
    mixinStandardHelpOptions = true,
    description = {
      "Asks a Kiln server for a UDF resource, as Databend does on every query, and prints",
      "{\"endpoint\":…,\"headers\":{…},\"key\":…} as JSON."
    })
final class ApplyCommand implements Callable<Integer> {

  @Option(
      names = "--server",
      paramLabel = "HOST:PORT",
      defaultValue = "127.0.0.1:50051",
      description = "Kiln's provisioning API (default ${DEFAULT-VALUE}).")
  String server;

  @Option(
      names = "--spec",
      paramLabel = "FILE",
      required = true,
      description = "The JSON runtime spec (what Databend sends), or - for stdin.")
  String specFile;

  @Option(
      names = "--tenant",
      paramLabel = "TENANT",
      defaultValue = "default",
      description = "Tenant sent as x-databend-tenant (default ${DEFAULT-VALUE}).")
  String tenant;

  @Option(
      names = "--timeout",
      paramLabel = "SECONDS",
      defaultValue = "5",
      description = "RPC deadline in seconds (Databend uses ${DEFAULT-VALUE}).")
  long timeoutSeconds;

  @Override
  public Integer call() throws Exception {
    String spec;
    try {
      spec =
          specFile.equals("-")
              ? new String(System.in.readAllBytes(), StandardCharsets.UTF_8)
              : Files.readString(Path.of(specFile), StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      System.err.println("kiln apply: spec file " + specFile + " does not exist");
      return 2;
    }
    try (DatabendClient client = new DatabendClient(server)) {
      DatabendClient.Resource r =
          client.apply(tenant, spec, List.of(), Duration.ofSeconds(timeoutSeconds));
      ObjectMapper json = new ObjectMapper();
      ObjectNode out = json.createObjectNode();
      out.put("endpoint", r.endpoint());
      ObjectNode h = out.putObject("headers");
      r.headers().forEach(h::put);
      out.put("key", r.key());
      System.out.println(json.writeValueAsString(out));
      return 0;
    } catch (StatusRuntimeException e) {
      System.err.println(
          "kiln apply: " + e.getStatus().getCode() + ": " + e.getStatus().getDescription());
      return 1;
    }
  }
}
