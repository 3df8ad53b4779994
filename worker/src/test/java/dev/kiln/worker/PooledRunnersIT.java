package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.RuntimeSpec;
import java.io.ByteArrayOutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Pooled runners as host processes: started before their UDF is known, warm (WAITING), then handed
 * a UDF in a LOAD frame. The same runner inside a warm gVisor sandbox is covered by the control
 * plane's warm-pool test.
 */
class PooledRunnersIT {
  private static final ArrowType INT64 = new ArrowType.Int(64, true);

  @TempDir Path dir;
  @RegisterExtension final HostRunnerPools pools = new HostRunnerPools();

  /** The UDF's files where a LOAD puts them (under the test's directory), and its variables. */
  private PooledRunners.Load load(RuntimeSpec spec, Path udfDir, Map<String, String> env) {
    List<PooledRunners.File> files = new ArrayList<>();
    RunnerFiles.udfFiles(spec)
        .forEach(
            (path, bytes) ->
                files.add(
                    new PooledRunners.File(
                        udfDir.resolve(path.substring(path.lastIndexOf('/') + 1)).toString(),
                        0644,
                        bytes,
                        null)));
    Map<String, String> all = new java.util.TreeMap<>(env);
    all.put("KILN_UDF_DIR", udfDir.toString());
    return new PooledRunners.Load(all, files);
  }

  /**
   * The UDF's pool of {@code runners}: {@code warm} first, then new pooled runners from {@code
   * exec}, each loaded with the UDF and {@code KILN_TEST_ADD=5}.
   */
  private RunnerPool startLoaded(
      RuntimeSpec spec, RunnerProcess warm, HostRunnerLauncher exec, int runners) throws Exception {
    return pools.closedAfter(
        RunnerPool.start(
            UdfSignature.of(spec),
            PooledRunners.launcher(
                List.of(warm), exec, load(spec, dir.resolve("udf"), Map.of("KILN_TEST_ADD", "5"))),
            new RunnerPool.Options(
                runners, StartRunners.START_TIMEOUT, java.time.Duration.ofSeconds(60), 50)));
  }

  private List<Object> call(RunnerPool pool, List<Long> values) throws Exception {
    try (FieldVector in = Vectors.of(pools.allocator(), "arg1", INT64, values);
        FieldVector out = pool.call(List.of(in), values.size(), pools.allocator())) {
      return Vectors.values(out);
    }
  }

  @Test
  void aWarmRunnerTakesItsUdfFromTheLoadAndANewOneDoesTheSame() throws Exception {
    HostRunnerLauncher exec = new HostRunnerLauncher(dir.resolve("sandbox"));
    RunnerProcess warm = exec.launch(PooledRunners.environment());
    PooledRunners.awaitWarm(warm, PooledRunners.WARM_TIMEOUT);
    assertThat(Files.exists(dir.resolve("udf"))).as("nothing of the UDF before its LOAD").isFalse();

    RuntimeSpec spec =
        Udfs.spec(
            "plus",
            List.of("BIGINT"),
            "BIGINT",
            "import os\ndef plus(x):\n    return x + int(os.environ['KILN_TEST_ADD'])\n");
    RunnerPool pool = startLoaded(spec, warm, exec, 2);

    assertThat(call(pool, List.of(1L, 2L, 3L))).containsExactly(6L, 7L, 8L);
    // One runner was the warm one; the second was started for the UDF, warmed, then loaded.
    assertThat(exec.started()).hasSize(2);
    assertThat(Files.readString(dir.resolve("udf/udf.py"))).contains("def plus");
  }

  @Test
  void codeThatFailsToLoadIsReportedAsForAnyRunner() throws Exception {
    HostRunnerLauncher exec = new HostRunnerLauncher(dir.resolve("sandbox"));
    RunnerProcess warm = exec.launch(PooledRunners.environment());
    PooledRunners.awaitWarm(warm, PooledRunners.WARM_TIMEOUT);
    RuntimeSpec spec =
        Udfs.spec("broken", List.of("BIGINT"), "BIGINT", "def broken(x):\n  return (\n");

    assertThatThrownBy(
            () ->
                RunnerPool.start(
                    UdfSignature.of(spec),
                    PooledRunners.launcher(
                        List.of(warm), exec, load(spec, dir.resolve("udf"), Map.of())),
                    RunnerPool.Options.defaults()))
        .isInstanceOf(KilnException.class)
        .hasMessageContaining("the UDF code failed to load: SyntaxError")
        .satisfies(
            e -> assertThat(((KilnException) e).code()).isEqualTo(ErrorCode.UDF_LOAD_FAILED));
  }

  @Test
  void theLoadFrameCarriesEveryFileAfterItsHeader() throws Exception {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    PooledRunners.send(
        out,
        Map.of("A", "1"),
        List.of(
            new PooledRunners.File("/kiln/udf/udf.py", 0644, "x = 1\n".getBytes(), null),
            new PooledRunners.File("/kiln/imports/m.py", 0600, "y = 2\n".getBytes(), null)));
    FrameIO.Frame frame = FrameIO.readFrame(new java.io.ByteArrayInputStream(out.toByteArray()));

    assertThat(frame.type()).isEqualTo(FrameIO.LOAD);
    int headerLength = (int) FrameIO.INT.get(frame.payload(), 0);
    String header =
        new String(frame.payload(), 4, headerLength, java.nio.charset.StandardCharsets.UTF_8);
    assertThat(header)
        .isEqualTo(
            "{\"env\":{\"A\":\"1\"},\"files\":[[\"/kiln/udf/udf.py\",6,420],[\"/kiln/imports/m.py\",6,384]]}");
    assertThat(
            new String(
                frame.payload(), 4 + headerLength, 12, java.nio.charset.StandardCharsets.UTF_8))
        .isEqualTo("x = 1\ny = 2\n");
  }

  @Test
  void aRunnerWithAPreloadImportsItsModulesBeforeItIsWarmAndTheUdfFindsThemImported()
      throws Exception {
    Path site = Files.createDirectories(dir.resolve("site"));
    Path log = dir.resolve("imports.log");
    // Each import appends a line; the module keeps what the environment said at that moment.
    Files.writeString(
        site.resolve("kiln_test_preloaded.py"),
        "import os\n"
            + "with open(%s, 'a') as f:\n    f.write('imported\\n')\n".formatted(pyString(log))
            + "ADD_AT_IMPORT = os.environ.get('KILN_TEST_ADD')\n");
    Files.writeString(site.resolve("kiln_test_broken.py"), "raise RuntimeError('no')\n");
    HostRunnerLauncher exec = new HostRunnerLauncher(dir.resolve("sandbox"));
    List<String> env =
        new ArrayList<>(
            PooledRunners.environment(List.of("kiln_test_broken", "kiln_test_preloaded")));
    env.add("PYTHONPATH=" + site);
    RunnerProcess warm = exec.launch(env);
    PooledRunners.awaitWarm(warm, PooledRunners.WARM_TIMEOUT);
    assertThat(Files.readAllLines(log)).as("imported before WAITING").containsExactly("imported");

    RuntimeSpec spec =
        Udfs.spec(
            "probe",
            List.of("BIGINT"),
            "BIGINT",
            "import os, sys, kiln_test_preloaded as m\n"
                + "def probe(x):\n"
                + "    # 1000: imported before the LOAD's variables; 10: the variable is there now;"
                + " 1: the preload variable is gone\n"
                + "    return (x + (1000 if m.ADD_AT_IMPORT is None else 0)\n"
                + "            + (10 if os.environ.get('KILN_TEST_ADD') == '5' else 0)\n"
                + "            + (1 if 'KILN_PRELOAD' not in os.environ else 0))\n");
    RunnerPool pool = startLoaded(spec, warm, exec, 1);

    assertThat(call(pool, List.of(1L))).containsExactly(1012L);
    assertThat(Files.readAllLines(log)).as("the UDF's import found it imported").hasSize(1);
  }

  @Test
  void aPreloadServesOnlyUdfsThatCannotTellTheDifference() {
    List<String> modules = List.of("numpy", "pandas");
    assertThat(PooledRunners.preloadFits(Map.of(), List.of("helpers.py", "data.csv"), modules))
        .isTrue();
    assertThat(PooledRunners.preloadFits(Map.of("OMP_NUM_THREADS", "1"), List.of(), modules))
        .as("its own variables may change how a package imports")
        .isFalse();
    assertThat(PooledRunners.preloadFits(Map.of(), List.of("pandas.py"), modules))
        .as("an import that shadows a preloaded module")
        .isFalse();
    assertThat(PooledRunners.preloadFits(Map.of(), List.of("numpy"), modules)).isFalse();
    assertThat(PooledRunners.preloadFits(Map.of(), List.of("lib.zip"), modules))
        .as("an archive may hold any module")
        .isFalse();
    assertThat(PooledRunners.environment(modules)).contains("KILN_PRELOAD=numpy,pandas");
    assertThatThrownBy(() -> PooledRunners.environment(List.of("os; rm")))
        .isInstanceOf(IllegalArgumentException.class);
  }

  private static String pyString(Path p) {
    return "'" + p.toString().replace("\\", "\\\\").replace("'", "\\'") + "'";
  }
}
