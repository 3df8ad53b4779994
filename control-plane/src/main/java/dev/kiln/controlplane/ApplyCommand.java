package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.QueryScripts;
import dev.kiln.definition.RuntimeSpec;
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
    header = "Asks for a UDF resource, as Databend does, and prints it as JSON.",
    footer = {
      "%nExamples:",
      "  kiln apply --spec examples/add_one.json",
      "  kiln apply --script examples/add_one.sh --name add_one",
      "  kiln apply --protocol worker --spec examples/add_one.json --name add_one",
      "%nExit status:",
      "  0  done",
      "  1  the server refused or failed (its code and message on stderr)",
      "  2  bad usage (a missing file, a malformed flag)"
    },
    mixinStandardHelpOptions = true,
    description = {
      "Asks a Kiln server for a UDF resource, as Databend does on every query, and prints",
      "{\"endpoint\":…,\"headers\":{…},\"key\":…} as JSON. --spec FILE sends ApplyUdfResource;",
      "--script FILE --name NAME sends CreateWorker with a script as Databend Query renders it,",
      "and --protocol worker --spec FILE --name NAME renders that script from the spec first."
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
      names = "--protocol",
      paramLabel = "apply|worker",
      defaultValue = "apply",
      description =
          "With --spec: apply sends ApplyUdfResource (default); worker renders the script Databend"
              + " Query would send for the spec and sends CreateWorker.")
  String protocol;

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
    boolean worker = scriptFile != null || protocol.equals("worker");
    if ((specFile == null) == (scriptFile == null)
        || (worker && name == null)
        || !(protocol.equals("apply") || protocol.equals("worker"))) {
      System.err.println(
          "kiln apply: give --spec FILE [--protocol apply], --spec FILE --protocol worker --name"
              + " NAME, or --script FILE --name NAME");
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
      DatabendClient.Resource r;
      if (!worker) {
        r = client.apply(tenant, text, List.of(), deadline);
      } else {
        String script = scriptFile != null ? text : render(text);
        if (script == null) {
          return 2;
        }
        r = client.createWorker(tenant, name, script, deadline);
      }
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

  /** The script Databend Query would send for a spec without imports; null after an error. */
  private static String render(String spec) {
    RuntimeSpec parsed;
    try {
      parsed = RuntimeSpec.parse(spec);
    } catch (KilnException e) {
      System.err.println("kiln apply: invalid UDF spec: " + e.getMessage());
      return null;
    }
    if (!parsed.imports().isEmpty()) {
      System.err.println(
          "kiln apply: --protocol worker cannot render imports (Query presigns each one); send"
              + " a script with --script, or the spec with --protocol apply");
      return null;
    }
    return QueryScripts.udf(parsed.code(), parsed.handler())
        .inputs(parsed.inputTypes().stream().map(Object::toString).toArray(String[]::new))
        .result(parsed.resultType().toString())
        .packages(parsed.packages().toArray(String[]::new))
        .render();
  }
}
