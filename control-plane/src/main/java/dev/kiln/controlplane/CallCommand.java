package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import org.apache.arrow.flight.CallStatus;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kiln call}: calls a UDF endpoint the way Databend's Flight client does. */
@Command(
    name = "call",
    header = "Calls a UDF through its Flight endpoint and prints the rows as JSON.",
    footer = {
      "%nExample:",
      "  kiln call --endpoint http://127.0.0.1:8815 -H x-kiln-token=v1.... \\",
      "    --handler add_one --input-types 'INT NULL' --result-type 'INT NULL' \\",
      "    --rows '[[1],[null],[41]]'",
      "%nExit status:",
      "  0  done",
      "  1  the server refused or failed (its code and message on stderr)",
      "  2  bad usage (a missing file, a malformed flag)"
    },
    mixinStandardHelpOptions = true,
    description = {
      "Calls a UDF through its Flight endpoint (DoExchange, as Databend Query does) and prints",
      "the result rows as JSON, e.g. [[2],[3]]."
    })
final class CallCommand implements Callable<Integer> {

  @Option(
      names = "--endpoint",
      paramLabel = "URL",
      required = true,
      description = "The endpoint ApplyUdfResource returned, e.g. http://127.0.0.1:8815.")
  String endpoint;

  @Option(
      names = {"-H", "--header"},
      paramLabel = "NAME=VALUE",
      description = "A call header; pass every header ApplyUdfResource returned.")
  List<String> headers = new ArrayList<>();

  @Option(
      names = "--tenant",
      paramLabel = "TENANT",
      defaultValue = "default",
      description = "Sent as x-databend-tenant unless -H sets it (default ${DEFAULT-VALUE}).")
  String tenant;

  @Option(
      names = "--handler",
      paramLabel = "NAME",
      required = true,
      description = "The handler (the Flight path).")
  String handler;

  @Option(
      names = "--input-types",
      paramLabel = "TYPES",
      defaultValue = "",
      description = "Comma-separated argument types, e.g. 'INT NULL,VARCHAR NULL'.")
  String inputTypes;

  @Option(
      names = "--result-type",
      paramLabel = "TYPE",
      required = true,
      description = "The declared result type, e.g. 'INT NULL'.")
  String resultType;

  @Option(
      names = "--rows",
      paramLabel = "JSON",
      defaultValue = "[]",
      description = "Input rows as a JSON array of arrays, e.g. '[[1],[2]]'.")
  String rows;

  @Option(
      names = "--timeout",
      paramLabel = "SECONDS",
      defaultValue = "180",
      description = "Call timeout in seconds (Databend uses ${DEFAULT-VALUE}).")
  long timeoutSeconds;

  @Override
  public Integer call() throws Exception {
    List<DataType> types;
    try {
      types = parseTypes(inputTypes);
      DataType.parse(resultType);
    } catch (KilnException e) {
      System.err.println("kiln call: " + e.getMessage());
      return 2;
    }
    Map<String, String> callHeaders = new LinkedHashMap<>();
    for (String h : headers) {
      int eq = h.indexOf('=');
      if (eq <= 0) {
        System.err.println("kiln call: header '" + h + "' must look like NAME=VALUE");
        return 2;
      }
      callHeaders.put(h.substring(0, eq).trim().toLowerCase(Locale.ROOT), h.substring(eq + 1));
    }
    try (BufferAllocator allocator = new RootAllocator()) {
      ArrayNode out =
          DatabendClient.call(
              allocator,
              endpoint,
              callHeaders,
              tenant,
              handler,
              types,
              DatabendClient.json(rows),
              Duration.ofSeconds(timeoutSeconds));
      System.out.println(out);
      return 0;
    } catch (FlightRuntimeException e) {
      CallStatus status = e.status();
      System.err.println("kiln call: " + status.code() + ": " + status.description());
      return 1;
    } catch (IllegalArgumentException e) {
      System.err.println("kiln call: " + e.getMessage());
      return 2;
    }
  }

  /** Splits at commas outside parentheses, so DECIMAL(10, 2) stays one type. */
  static List<DataType> parseTypes(String text) throws KilnException {
    List<DataType> types = new ArrayList<>();
    if (text.isBlank()) {
      return types;
    }
    int depth = 0;
    int start = 0;
    for (int i = 0; i <= text.length(); i++) {
      char c = i < text.length() ? text.charAt(i) : ',';
      if (c == '(') {
        depth++;
      } else if (c == ')') {
        depth--;
      } else if (c == ',' && depth == 0) {
        types.add(DataType.parse(text.substring(start, i).trim()));
        start = i + 1;
      }
    }
    return types;
  }
}
