package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.RuntimeSpec;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RunnerFilesTest {

  @TempDir Path dir;

  @Test
  void theRunnerLayerHoldsTheRunnerScript() {
    Map<String, byte[]> files = RunnerFiles.runtimeFiles();

    assertThat(files)
        .containsOnlyKeys(
            "/kiln/runner/kiln_runner.py",
            "/kiln/runner/kiln_modules.py",
            "/kiln/runner/kiln_serve.py",
            "/kiln/runner/kiln_listen.py",
            "/kiln/runner/kiln_calls.py",
            "/kiln/runner/kiln_columns.py",
            "/kiln/runner/kiln_nested.py",
            "/kiln/runner/kiln_wire.py",
            "/kiln/runner/databend_udf.py");
    assertThat(new String(files.get("/kiln/runner/kiln_serve.py"), StandardCharsets.UTF_8))
        .contains("def serve(pooled=False):");
    assertThat(new String(files.get("/kiln/runner/databend_udf.py"), StandardCharsets.UTF_8))
        .contains("def udf(");
  }

  /** The version digest is taken over the runner layer, so it must hold every runner file. */
  @Test
  void theRunnerLayerHoldsEveryFileOfTheRunner() throws Exception {
    Path sources = Path.of(RunnerFiles.class.getResource("runner").toURI());
    List<String> expected;
    try (Stream<Path> listing = Files.list(sources)) {
      expected =
          listing
              .map(p -> p.getFileName().toString())
              .filter(name -> !name.equals("PROTOCOL.md"))
              .map(name -> "/kiln/runner/" + name)
              .toList();
    }

    assertThat(RunnerFiles.runtimeFiles().keySet()).containsExactlyInAnyOrderElementsOf(expected);
  }

  @Test
  void theVersionIsAStableSha256() {
    assertThat(RunnerFiles.version()).matches("[0-9a-f]{64}").isEqualTo(RunnerFiles.version());
  }

  @Test
  void commandsPointAtTheRunner() {
    assertThat(RunnerFiles.initCommand())
        .containsExactly("python3", "/kiln/runner/kiln_runner.py", "init");
    assertThat(RunnerFiles.serveCommand())
        .containsExactly("python3", "/kiln/runner/kiln_runner.py", "serve");
    assertThat(RunnerFiles.environment()).containsEntry("KILN_UDF_DIR", "/kiln/udf");
  }

  @Test
  void theCodeLayerHoldsTheCodeVerbatimAndCanonicalTypes() throws Exception {
    String code = "# ünïcode\ndef f(a, b):\n    return a\n";
    RuntimeSpec spec = Udfs.spec("f", List.of("int", "VARCHAR"), "BIGINT UNSIGNED", code);

    Map<String, byte[]> files = RunnerFiles.udfFiles(spec);

    assertThat(files).containsOnlyKeys("/kiln/udf/udf.py", "/kiln/udf/udf.meta");
    assertThat(files.get("/kiln/udf/udf.py")).isEqualTo(code.getBytes(StandardCharsets.UTF_8));
    assertThat(new String(files.get("/kiln/udf/udf.meta"), StandardCharsets.UTF_8))
        .isEqualTo(
            "handler=f\ninput_type=INT32 NULL\ninput_type=STRING NULL\nresult_type=UINT64 NULL\n");
    assertThat(RunnerFiles.udfFiles(spec).get("/kiln/udf/udf.meta"))
        .isEqualTo(files.get("/kiln/udf/udf.meta"));
  }

  /** The provisioner's readiness signal: "ready", then it waits for stdin to close. */
  @Test
  void initModeSaysReadyAndExitsWhenStdinCloses() throws Exception {
    Path runner = dir.resolve("kiln_runner.py");
    Files.write(runner, RunnerFiles.runtimeFiles().get(RunnerFiles.RUNNER_PATH));
    List<String> command = new ArrayList<>(RunnerFiles.initCommand());
    command.set(1, runner.toString());
    Process process = new ProcessBuilder(command).start();
    try {
      BufferedReader out =
          new BufferedReader(
              new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8));
      assertThat(out.readLine()).isEqualTo("ready");
      assertThat(process.isAlive()).isTrue();

      process.getOutputStream().close();

      assertThat(process.waitFor(10, TimeUnit.SECONDS)).isTrue();
      assertThat(process.exitValue()).isZero();
    } finally {
      process.destroyForcibly();
    }
  }
}
