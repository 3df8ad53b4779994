package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.call;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.definition.DatabendSql;
import dev.kiln.resolver.PipMirror;
import dev.kiln.resolver.StaticIndexServer;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code kiln prewarm} as a CI job runs it: the examples' SQL file (a plain UDF, one with numpy
 * from PACKAGES, one with humanize from a PEP 723 block, against the local mirror of real wheels
 * served over HTTP), real gVisor sandboxes; then a server on the same data directory answers them.
 */
class PrewarmIT {
  private static final Path EXAMPLES = Path.of("..", "examples", "udfs.sql");

  /** Five lines: a Python UDF whose package is in no index. */
  private static final String UNKNOWN_PACKAGE =
      """
      CREATE FUNCTION nope (INT) RETURNS INT LANGUAGE python
      PACKAGES = ('kiln-no-such-package-anywhere') HANDLER = 'nope' AS $$
      def nope(x):
          return x
      $$;
      """;

  static StaticIndexServer mirror;
  @TempDir Path dataDir;
  @TempDir Path files;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void startMirror() throws Exception {
    mirror = new StaticIndexServer(PipMirror.fileIndexes());
  }

  @AfterAll
  static void stopMirror() {
    if (mirror != null) {
      mirror.close();
    }
  }

  private record Run(int exit, String stdout, String stderr) {
    List<JsonNode> lines() throws Exception {
      List<JsonNode> out = new ArrayList<>();
      for (String l : stdout.split("\n")) {
        if (!l.isBlank()) {
          out.add(KilnTestSupport.JSON.readTree(l));
        }
      }
      return out;
    }
  }

  private Run prewarm(Path... sqlFiles) {
    List<String> args =
        new ArrayList<>(
            List.of("--data-dir", dataDir.toString(), "--base-image", KilnTestSupport.baseImage()));
    for (URI u : mirror.indexUrls()) {
      args.addAll(List.of("--index-url", u.toString()));
    }
    for (Path f : sqlFiles) {
      args.add(f.toString());
    }
    return run(args);
  }

  /** {@code kiln prewarm --json ARGS...}: its exit status and stdout. */
  private static Run run(List<String> prewarmArgs) {
    List<String> args = new ArrayList<>(List.of("prewarm", "--json"));
    args.addAll(prewarmArgs);
    PrintStream stdout = System.out;
    PrintStream stderr = System.err;
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    ByteArrayOutputStream err = new ByteArrayOutputStream();
    System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
    System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
    try {
      int exit = new CommandLine(new Kiln()).execute(args.toArray(String[]::new));
      return new Run(
          exit, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    } finally {
      System.setOut(stdout);
      System.setErr(stderr);
      System.err.print(err.toString(StandardCharsets.UTF_8));
    }
  }

  @Test
  void theExamplesArePrewarmedAndAServerOnTheirDataDirectoryAnswersThem() throws Exception {
    Run run = prewarm(EXAMPLES);
    assertThat(run.exit()).as(run.stdout()).isZero();
    List<JsonNode> udfs = run.lines();
    assertThat(udfs)
        .extracting(n -> n.get("name").asText())
        .containsExactly("add_one", "hypot", "human_size");
    assertThat(udfs).allSatisfy(n -> assertThat(n.get("status").asText()).isEqualTo("warm"));
    assertThat(udfs.get(1).get("source").asText()).endsWith("udfs.sql:11");
    assertThat(udfs.get(1).get("image_digest").asText()).startsWith("sha256:");
    assertThat(udfs.get(1).get("lock").toString()).contains("\"numpy==");
    assertThat(udfs.get(1).get("fetched_bytes").asLong())
        .as("numpy's wheel came from the index")
        .isGreaterThan(1_000_000);
    assertThat(udfs.get(1).get("step_seconds").get("wheels").asDouble()).isPositive();
    assertThat(udfs.get(0).get("lock")).isEmpty();
    // Not a terminal: a line per step on stderr, for CI logs (a step shorter than a glance at the
    // server, 0.1 s, may go unsaid), with the bytes fetched so far.
    assertThat(run.stderr())
        .containsPattern(
            "udfs.sql:11 hypot: step 5 of 5, starting the runners \\([0-9.]+ MB fetched\\)");

    // The server a deploy starts next, on the same data directory: the same UDF, the same key,
    // and its image (with the packages' byte code) found, not built again.
    DatabendSql.Function hypot = DatabendSql.read(Files.readString(EXAMPLES)).functions().get(1);
    List<String> images;
    try (RunningKiln kiln =
        RunningKiln.start(
            dataDir,
            config ->
                config
                    .set("zygotes", "2")
                    .indexUrls(mirror.indexUrls().stream().map(URI::toString).toList()))) {
      // Before any request, it keeps a zygote of each package set the data directory knows.
      KilnTestSupport.eventually(
          "zygotes of numpy and of humanize are ready",
          Duration.ofSeconds(120),
          () -> kiln.server().meters().find("kiln.zygotes.ready").gauge().value() == 2);
      images = images(); // the zygotes' own images (base, wheels, runner) are there by now
      DatabendClient.Resource r = kiln.api().apply("default", hypot.spec());
      assertThat(r.key()).isEqualTo(udfs.get(1).get("key").asText());
      assertThat(
              call(
                  allocator,
                  r,
                  "default",
                  "hypot",
                  List.of("DOUBLE NULL", "DOUBLE NULL"),
                  "[[3.0, 4.0]]"))
          .isEqualTo(List.of(List.of(5.0)));
      assertThat(kiln.server().meters().find("kiln.zygotes.hits").functionCounter().count())
          .as("the first query was placed in numpy's zygote")
          .isEqualTo(1);
    }
    assertThat(images()).as("images in the layout after the first query").isEqualTo(images);
  }

  @Test
  void againstARunningServerTheUdfsStartThereAndFailuresNameTheirLine() throws Exception {
    Path sql = files.resolve("two.sql");
    Files.writeString(
        sql,
        """
        CREATE FUNCTION twice (INT) RETURNS INT LANGUAGE python HANDLER = 'twice' AS $$
        def twice(x):
            return None if x is None else 2 * x
        $$;
        """
            + UNKNOWN_PACKAGE);
    try (RunningKiln kiln =
        RunningKiln.start(
            dataDir,
            config -> config.indexUrls(mirror.indexUrls().stream().map(URI::toString).toList()))) {
      Run run =
          run(
              List.of(
                  "--server",
                  "127.0.0.1:" + kiln.server().grpcPort(),
                  "--admin",
                  "http://127.0.0.1:" + kiln.server().adminPort(),
                  "--tenant",
                  "acme",
                  sql.toString()));
      assertThat(run.exit()).as(run.stdout()).isEqualTo(1);
      List<JsonNode> udfs = run.lines();
      assertThat(udfs).extracting(n -> n.get("status").asText()).containsExactly("warm", "failed");
      // The server streamed its progress: what it made is in the result as locally.
      assertThat(udfs.get(0).get("image_digest").asText()).startsWith("sha256:");
      assertThat(udfs.get(0).get("lock")).isEmpty();
      assertThat(udfs.get(0).get("step_seconds").get("runners").asDouble()).isPositive();
      assertThat(run.stderr()).contains("two.sql:1 twice: step ");
      assertThat(udfs.get(1).get("source").asText()).endsWith("two.sql:5");
      assertThat(udfs.get(1).get("code").asText()).isEqualTo("PACKAGE_NOT_FOUND");
      assertThat(udfs.get(1).get("error").asText()).contains("kiln-no-such-package-anywhere");
      // The warm one is running on that server, for the tenant: its first query finds it ready.
      DatabendSql.Function twice = DatabendSql.read(Files.readString(sql)).functions().get(0);
      assertThat(kiln.server().timings("acme", udfs.get(0).get("key").asText())).isPresent();
      DatabendClient.Resource r = kiln.api().apply("acme", twice.spec());
      assertThat(call(allocator, r, "acme", "twice", List.of("INT NULL"), "[[21]]"))
          .isEqualTo(List.of(List.of(42)));
    }
  }

  /** The names of the images in the data directory's OCI layout. */
  private List<String> images() throws Exception {
    JsonNode index =
        KilnTestSupport.JSON.readTree(
            Files.readString(dataDir.resolve("images").resolve("oci").resolve("index.json")));
    List<String> names = new ArrayList<>();
    for (JsonNode m : index.path("manifests")) {
      names.add(m.path("annotations").path("org.opencontainers.image.ref.name").asText());
    }
    return names;
  }

  @Test
  void aFunctionThatCannotBeWarmedFailsTheRunNamingItsFileAndLine() throws Exception {
    Path bad = files.resolve("bad.sql");
    Files.writeString(
        bad,
        """
        CREATE FUNCTION ok (INT) RETURNS INT LANGUAGE python HANDLER = 'ok' AS $$
        def ok(x):
            return x
        $$;

        """
            + UNKNOWN_PACKAGE
            + """
        CREATE FUNCTION lost (INT) RETURNS INT LANGUAGE python HANDLER = 'missing' AS $$
        def lost(x):
            return x
        $$;
        """);
    Run run = prewarm(bad);
    assertThat(run.exit()).isEqualTo(1);
    List<JsonNode> udfs = run.lines();
    assertThat(udfs)
        .extracting(n -> n.get("status").asText())
        .containsExactly("warm", "failed", "failed");
    assertThat(udfs.get(1).get("source").asText()).endsWith("bad.sql:6");
    assertThat(udfs.get(1).get("code").asText()).isEqualTo("PACKAGE_NOT_FOUND");
    assertThat(udfs.get(1).get("error").asText()).contains("kiln-no-such-package-anywhere");
    assertThat(udfs.get(2).get("source").asText()).endsWith("bad.sql:11");
    assertThat(udfs.get(2).get("error").asText()).contains("missing");
  }
}
