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

/**
 * {@code kiln apply}: asks for a UDF resource the way Databend does — ApplyUdfResource with a JSON
 * spec, or CreateWorker with the script Databend Query renders — and prints the answer.
 */
@Command(
    name = "apply",
    mixinStandardHelpOptions = true,
    description = {
      "Asks a Kiln server for a UDF resource, as Databend does on every query, and prints",
      "{\"endpoint\":…,\"headers\":{…},\"key\":…} as JSON. --spec FILE sends ApplyUdfResource;",
      "--script FILE --name NAME sends CreateWorker with a script as Databend Query renders it."
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
      description = "The JSON runtime spec (what ApplyUdfResource sends), or - for stdin.")
  String specFile;

  @Option(
      names = "--script",
      paramLabel = "FILE",
      description =
          "A CreateWorker script as Databend Query renders it, or - for stdin (needs --name).")
  String scriptFile;

  @Option(
      names = "--name",
      paramLabel = "NAME",
      description = "The worker (the UDF's SQL name) for --script.")
  String name;

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
    if ((specFile == null) == (scriptFile == null) || (scriptFile != null && name == null)) {
      System.err.println("kiln apply: give either --spec FILE, or --script FILE and --name NAME");
      return 2;
    }
    String file = specFile != null ? specFile : scriptFile;
    String text;
    try {
      text =
          file.equals("-")
              ? new String(System.in.readAllBytes(), StandardCharsets.UTF_8)
              : Files.readString(Path.of(file), StandardCharsets.UTF_8);
    } catch (NoSuchFileException e) {
      System.err.println("kiln apply: file " + file + " does not exist");
      return 2;
    }
    try (DatabendClient client = new DatabendClient(server)) {
      Duration deadline = Duration.ofSeconds(timeoutSeconds);
      DatabendClient.Resource r =
          specFile != null
              ? client.apply(tenant, text, List.of(), deadline)
              : client.createWorker(tenant, name, text, deadline);
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
