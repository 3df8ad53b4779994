package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DatabendSql;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code kiln prewarm}: for CI, so that the first query after a deploy is a warm one. Reads the
 * UDFs of Databend SQL files, ApplyUdfResource specs and CreateWorker scripts, and runs each
 * through the server's own pipeline on the data directory (and caches) a server will use: the
 * request is checked as the server checks it, packages resolved, wheels fetched, layers and the
 * image built, the UDF loaded once in a sandbox, and the packages' byte code compiled.
 */
@Command(
    name = "prewarm",
    header = "Builds UDFs' packages and images ahead of their first query (for CI).",
    mixinStandardHelpOptions = true,
    sortOptions = false,
    description = {
      "Reads every CREATE FUNCTION ... LANGUAGE python statement of Databend SQL",
      "files (other statements are skipped), ApplyUdfResource specs (*.json) and",
      "CreateWorker scripts (*.sh, named after the file), and runs each UDF through",
      "the pipeline a server runs, on the same data directory and caches (the",
      "server flags below are kiln serve's): checked as the server checks it,",
      "packages resolved and fetched, layers and image built, loaded once in a",
      "sandbox, byte code compiled. A server started on that data directory then",
      "starts them warm. Staged imports are fetched per query, as Databend presigns",
      "them per query."
    },
    footer = {
      "%nExamples:",
      "  kiln prewarm udfs/*.sql",
      "  kiln prewarm --json --data-dir /var/lib/kiln --s3-bucket udf-cache udfs/*.sql",
      "  kiln prewarm --server kiln:50051 --admin http://kiln:9090 --tenant acme x.sql",
      "%nExit status:",
      "  0  every UDF is warm",
      "  1  a UDF failed (each failure names its file:line and the server's message)",
      "  2  bad usage (a missing file, a malformed flag)"
    })
final class PrewarmCommand implements Callable<Integer> {
  private static final ObjectMapper JSON = new ObjectMapper();

  @Parameters(paramLabel = "FILE", arity = "1..*", description = "*.sql, *.json or *.sh files.")
  List<Path> files;

  @Option(
      names = "--tenant",
      paramLabel = "TENANT",
      defaultValue = "default",
      description = "The tenant the UDFs are prewarmed for (default ${DEFAULT-VALUE}).")
  String tenant;

  @Option(names = "--json", description = "One JSON object per UDF on stdout, for scripts.")
  boolean json;

  @Option(
      names = "--udf-timeout",
      paramLabel = "SECONDS",
      defaultValue = "900",
      description = "How long one UDF may take (default ${DEFAULT-VALUE}).")
  long udfTimeoutSeconds;

  @Option(names = "--verbose", description = "The server's log on stderr as well.")
  boolean verbose;

  @Option(
      names = "--progress",
      paramLabel = "HOW",
      defaultValue = "auto",
      description =
          "bars (a progress bar per UDF on stderr), lines (a line per step, for logs) or auto:"
              + " bars when stderr is a terminal (default ${DEFAULT-VALUE}).")
  String progressMode;

  @Option(
      names = "--server",
      paramLabel = "HOST:PORT",
      description =
          "Prewarm on a running server (its provisioning API; --admin is its admin port)"
              + " instead of on a data directory: each UDF is started there, as a query would"
              + " start it, and stays until it idles out (--auto-suspend).")
  String server;

  @Mixin AdminOption admin;

  @Mixin ServerOptions options;

  /** One UDF to prewarm, where it was read, and how to ask for it. */
  private record Udf(String name, String source, String spec, String script, String problem) {}

  private PrewarmDisplay display;

  @Override
  public Integer call() throws Exception {
    PrewarmDisplay.Mode mode;
    try {
      mode = PrewarmDisplay.Mode.valueOf(progressMode.toUpperCase(Locale.ROOT));
    } catch (IllegalArgumentException e) {
      System.err.println(
          "kiln prewarm: --progress takes auto, bars or lines, not '" + progressMode + "'");
      return 2;
    }
    display = PrewarmDisplay.of(mode, System.err);
    List<Udf> udfs = new ArrayList<>();
    int skipped = 0;
    for (Path f : files) {
      String text;
      try {
        text = Files.readString(f);
      } catch (NoSuchFileException e) {
        System.err.println("kiln prewarm: file " + f + " does not exist");
        return 2;
      }
      String name = f.getFileName().toString();
      String lower = name.toLowerCase(Locale.ROOT);
      if (lower.endsWith(".json")) {
        udfs.add(new Udf(name.substring(0, name.length() - 5), f + ":1", text, null, null));
      } else if (lower.endsWith(".sh")) {
        udfs.add(new Udf(name.substring(0, name.length() - 3), f + ":1", null, text, null));
      } else {
        try {
          DatabendSql.Script sql = DatabendSql.read(text);
          skipped += sql.otherStatements();
          for (DatabendSql.Function fn : sql.functions()) {
            udfs.add(new Udf(fn.name(), f + ":" + fn.line(), fn.spec(), null, null));
          }
        } catch (DatabendSql.Malformed e) {
          udfs.add(new Udf("?", f + ":" + e.line(), null, null, e.getMessage()));
        }
      }
    }
    if (server != null) {
      return onServer(udfs, skipped);
    }
    if (!verbose && System.getProperty("KILN_LOG_LEVEL") == null) {
      System.setProperty("KILN_LOG_LEVEL", "WARN");
    }
    KilnConfig config =
        options.configOrExplain(
            "kiln prewarm",
            b ->
                b.set("grpc-port", "0")
                    .set("flight-port", "0")
                    .set("admin-port", "0")
                    .set("bind-host", "127.0.0.1")
                    .set("warm-pool", "0")
                    .set("zygotes", "0")
                    // Answered at once, so that the UDF's progress shows from its first step.
                    .set("apply-wait", "0s"));
    if (config == null) {
      return 2;
    }
    long started = System.nanoTime();
    List<ObjectNode> results;
    try {
      results = pass(config, udfs, true);
      // Those images came before their packages' byte code: build them again with it, as a server
      // started on this data directory would at its first query, and load each once more from the
      // image that server will find. A UDF without packages has no byte code to wait for.
      List<Integer> again = new ArrayList<>();
      for (int i = 0; i < results.size(); i++) {
        if (withPackages(results.get(i))) {
          again.add(i);
        }
      }
      if (!again.isEmpty()) {
        display.say("building the images again with the byte code ...");
        List<ObjectNode> second = pass(config, again.stream().map(udfs::get).toList(), false);
        for (int k = 0; k < again.size(); k++) {
          ObjectNode first = results.get(again.get(k));
          ObjectNode rebuilt = second.get(k);
          if (isWarm(rebuilt)) {
            first.set("image_digest", rebuilt.get("image_digest"));
          } else {
            results.set(again.get(k), rebuilt);
          }
        }
      }
    } catch (KilnException | IOException e) {
      System.err.println("kiln prewarm: the pipeline could not start: " + e.getMessage());
      return 1;
    }
    results.forEach(this::print);
    int failed = (int) results.stream().filter(r -> !isWarm(r)).count();
    summary(udfs.size(), failed, skipped, started);
    return failed == 0 ? 0 : 1;
  }

  /**
   * One server on the data directory prewarms {@code udfs}, then, with {@code awaitByteCode}, waits
   * for the byte code of their packages; each UDF's result, in order.
   */
  private List<ObjectNode> pass(KilnConfig config, List<Udf> udfs, boolean awaitByteCode)
      throws KilnException, IOException, InterruptedException {
    List<ObjectNode> results = new ArrayList<>();
    try (KilnServer server = KilnServer.start(config);
        DatabendClient client = new DatabendClient("127.0.0.1:" + server.grpcPort())) {
      for (Udf u : udfs) {
        results.add(prewarm(client, u, key -> local(server, key)));
      }
      if (awaitByteCode && results.stream().anyMatch(PrewarmCommand::withPackages)) {
        display.say("compiling the packages' byte code ...");
        if (!server.awaitByteCode(Duration.ofSeconds(udfTimeoutSeconds))) {
          System.err.println(
              "kiln prewarm: the packages' byte code was not compiled within "
                  + udfTimeoutSeconds
                  + " s; a server compiles it after the first start");
        }
      }
    }
    return results;
  }

  private static boolean isWarm(ObjectNode result) {
    return result.get("status").asText().equals("warm");
  }

  private static boolean withPackages(ObjectNode result) {
    return isWarm(result) && !result.path("lock").isEmpty();
  }

  private void summary(int udfs, int failed, int skipped, long startedNanos) {
    display.say(
        "%d of %d UDFs warm, %d failed; %d other statements skipped; %.1f s"
            .formatted(
                udfs - failed, udfs, failed, skipped, (System.nanoTime() - startedNanos) / 1e9));
  }

  /** The progress reports of the UDF resource of a key, until it is ready or failed. */
  @FunctionalInterface
  private interface Reports {
    /** The next report, or null after the last. */
    JsonNode next() throws KilnException, InterruptedException;
  }

  /** Reports of a resource of the in-process server. */
  private Reports local(KilnServer server, String key) throws KilnException {
    UdfProgress.Watch watch =
        server
            .watchProgress(tenant, key, Duration.ofSeconds(udfTimeoutSeconds))
            .orElseThrow(
                () ->
                    new KilnException(
                        ErrorCode.INTERNAL, "the server forgot the UDF resource " + key));
    return watch::next;
  }

  /** Against a running server: each UDF applied there, as a query would, then awaited. */
  private int onServer(List<Udf> udfs, int skipped) throws InterruptedException {
    int failed = 0;
    long started = System.nanoTime();
    try (DatabendClient client = new DatabendClient(server)) {
      for (Udf u : udfs) {
        ObjectNode out = prewarm(client, u, this::remote);
        if (!isWarm(out)) {
          failed++;
        }
        print(out);
      }
    }
    summary(udfs.size(), failed, skipped, started);
    return failed == 0 ? 0 : 1;
  }

  /** Reports of a resource of a running server, streamed from its admin port. */
  private Reports remote(String key) throws KilnException {
    String path =
        "/udfs/%s/progress?tenant=%s&timeout=%d"
            .formatted(key, URLEncoder.encode(tenant, StandardCharsets.UTF_8), udfTimeoutSeconds);
    Iterator<String> lines;
    try {
      lines = AdminClient.lines("kiln prewarm", admin.url, path, Duration.ofSeconds(30)).iterator();
    } catch (AdminClient.CommandFailure e) {
      throw new KilnException(ErrorCode.SANDBOX_UNAVAILABLE, e.getMessage(), e);
    }
    return () -> {
      try {
        return lines.hasNext() ? JSON.readTree(lines.next()) : null;
      } catch (IOException | UncheckedIOException e) {
        throw new KilnException(
            ErrorCode.SANDBOX_UNAVAILABLE,
            "the server's progress stream broke off (" + e.getMessage() + ")",
            e);
      }
    };
  }

  /** Asks for the UDF as a query would, then follows its progress to the end. */
  private ObjectNode prewarm(DatabendClient client, Udf u, ReportSource source)
      throws InterruptedException {
    ObjectNode out = JSON.createObjectNode();
    out.put("name", u.name());
    out.put("source", u.source());
    if (u.problem() != null) {
      return failed(out, "INVALID_ARGUMENT", u.problem());
    }
    display.begin(u.source(), u.name());
    long t0 = System.nanoTime();
    Duration rpc = Duration.ofSeconds(60);
    try {
      DatabendClient.Resource r =
          u.spec() != null
              ? client.apply(tenant, u.spec(), List.of(), rpc)
              : client.createWorker(tenant, u.name(), u.script(), rpc);
      out.put("key", r.key());
      Reports reports = source.reports(r.key());
      JsonNode last = null;
      for (JsonNode n = reports.next(); n != null; n = reports.next()) {
        last = n;
        if (UdfProgress.isFinal(n)) {
          break;
        }
        display.update(n);
      }
      return finish(out, last, t0);
    } catch (StatusRuntimeException e) {
      // The server names its own error code at the end of the message ("... [KILN-107]").
      String message = String.valueOf(e.getStatus().getDescription());
      String code = e.getStatus().getCode().name();
      for (ErrorCode c : ErrorCode.values()) {
        if (message.endsWith("[" + c.label() + "]")) {
          code = c.name();
        }
      }
      return failed(out, code, message);
    } catch (KilnException e) {
      return failed(out, e.code().name(), e.getMessage());
    } finally {
      display.end(isWarm(out));
    }
  }

  /** Where a UDF's reports are read from: the server in process, or a running one. */
  @FunctionalInterface
  private interface ReportSource {
    Reports reports(String key) throws KilnException;
  }

  /** The result from the last report: warm with what the server made, or why not. */
  private ObjectNode finish(ObjectNode out, JsonNode last, long startedNanos) {
    String state = last == null ? "starting" : last.path("state").asText();
    if (state.equals("failed")) {
      return failed(out, last.path("code").asText(), last.path("error").asText());
    }
    if (!state.equals("ready")) {
      return failed(
          out,
          ErrorCode.SANDBOX_UNAVAILABLE.name(),
          "the UDF was not ready within "
              + udfTimeoutSeconds
              + " s (--udf-timeout)"
              + (last == null ? "" : "; it was " + last.path("doing").asText()));
    }
    if (last.has("image_error")) {
      // It runs, but its image is what a prewarm is for: the next server would build it again.
      return failed(
          out,
          last.path("image_error_code").asText(),
          "the UDF started in a warm sandbox but its image failed to build: "
              + last.path("image_error").asText());
    }
    out.put("status", "warm");
    out.put("seconds", (System.nanoTime() - startedNanos) / 1e9);
    for (String field : List.of("image_digest", "lock", "warm_sandbox", "step_seconds")) {
      out.set(field, last.get(field));
    }
    out.put("fetched_bytes", last.path("fetched_bytes").asLong());
    return out;
  }

  private static ObjectNode failed(ObjectNode out, String code, String message) {
    out.put("status", "failed");
    out.put("code", code);
    out.put("error", message);
    return out;
  }

  private void print(ObjectNode out) {
    if (json) {
      System.out.println(out);
      return;
    }
    String where = out.get("source").asText() + " " + out.get("name").asText();
    if (isWarm(out)) {
      JsonNode s = out.get("step_seconds");
      System.out.printf(
          Locale.ROOT,
          "%s: warm in %.1f s (key %s; packages %.1f s, wheels %.1f s%s, %s, runners %.1f s)%n",
          where,
          out.get("seconds").asDouble(),
          out.get("key").asText().substring(0, 12),
          s.path("packages").asDouble(),
          s.path("wheels").asDouble(),
          out.path("fetched_bytes").asLong() == 0
              ? ""
              : " for " + PrewarmDisplay.megabytes(out.path("fetched_bytes").asLong()),
          out.path("warm_sandbox").asBoolean()
              ? "a warm sandbox"
              : String.format(
                  Locale.ROOT,
                  "image %.1f s, sandbox %.1f s",
                  s.path("image").asDouble(),
                  s.path("sandbox").asDouble()),
          s.path("runners").asDouble());
    } else {
      System.out.printf(
          "%s: FAILED %s: %s%n", where, out.get("code").asText(), out.get("error").asText());
    }
  }
}
