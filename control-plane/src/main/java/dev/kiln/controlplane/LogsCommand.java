package dev.kiln.controlplane;

import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code kiln logs}: what a UDF printed (stdout and stderr, the last lines), from the server. */
@Command(
    name = "logs",
    header = "Shows the last lines a UDF printed to stdout and stderr.",
    footer = {
      "%nExamples:",
      "  kiln logs 5c1f2a        a key prefix, as kiln apply prints it",
      "  kiln logs v1.AbC...     the x-kiln-token value",
      "%nExit status:",
      "  0  done",
      "  1  the server refused or failed (its code and message on stderr)",
      "  2  bad usage (a missing file, a malformed flag)"
    },
    mixinStandardHelpOptions = true,
    description = {
      "Shows the last lines a UDF printed to stdout/stderr, kept per sandbox by the server.",
      "Name the UDF by its key (or a unique prefix of 6+ hex digits, as `kiln apply` prints it)",
      "or by the x-kiln-token value ApplyUdfResource returned."
    })
final class LogsCommand implements Callable<Integer> {

  @Parameters(paramLabel = "KEY|TOKEN", description = "The UDF's content key (prefix) or token.")
  String udf;

  @Mixin AdminOption admin;

  @Option(
      names = "--tenant",
      paramLabel = "TENANT",
      description = "Only this tenant's sandbox (a token implies its tenant).")
  String tenant;

  @Override
  public Integer call() throws Exception {
    String key = udf.trim();
    String[] tokenParts = key.split("\\.");
    if (tokenParts.length == 4 && tokenParts[0].equals("v1")) {
      key = tokenParts[1];
      if (tenant == null) {
        tenant = new String(Base64.getUrlDecoder().decode(tokenParts[2]), StandardCharsets.UTF_8);
      }
    }
    if (!key.matches("[0-9a-f]{6,64}")) {
      System.err.println(
          "kiln logs: '" + udf + "' is neither a content key (6 to 64 hex digits) nor a token");
      return 2;
    }
    String path =
        "/udfs/"
            + key
            + "/logs"
            + (tenant == null
                ? ""
                : "?tenant=" + URLEncoder.encode(tenant, StandardCharsets.UTF_8));
    try {
      System.out.print(AdminClient.get("kiln logs", admin.url, path));
      return 0;
    } catch (AdminClient.CommandFailure e) {
      System.err.println(e.getMessage());
      return 1;
    }
  }
}
