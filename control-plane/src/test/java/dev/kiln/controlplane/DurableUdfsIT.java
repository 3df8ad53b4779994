package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.QueryScripts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * What Kiln answered stays callable (real gVisor): after a restart of the server, after an idle UDF
 * was stopped, and after its sandbox died, a call with the token Databend already holds starts the
 * UDF again, waits for it and gets the right result — never "not found".
 */
class DurableUdfsIT {
  @TempDir Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  private static final String ADD_ONE =
      "def add_one(x):\n    return None if x is None else x + 1\n";

  private static String addOne() {
    return spec("add_one", List.of("BIGINT NULL"), "BIGINT NULL", ADD_ONE);
  }

  private List<List<Object>> call(DatabendClient.Resource r) throws Exception {
    return KilnTestSupport.call(
        allocator, r, "acme", "add_one", List.of("BIGINT NULL"), "[[1],[null],[41]]");
  }

  private static final List<List<Object>> ADDED =
      List.of(List.of(2L), Arrays.asList((Object) null), List.of(42L));

  private static double running(RunningKiln kiln) {
    return kiln.server().meters().get("kiln.sandboxes.running").gauge().value();
  }

  /** The resource as Databend holds it, pointed at the server running now. */
  private static DatabendClient.Resource at(RunningKiln kiln, DatabendClient.Resource r) {
    return new DatabendClient.Resource(kiln.server().endpoint(), r.headers(), r.key());
  }

  @Test
  void tokensOutliveARestartOfTheServer() throws Exception {
    Path data = dir.resolve("data");
    Path envFile =
        Files.writeString(
            dir.resolve("udf_env.toml"), "[udf_env]\n\"acme.read_env\" = { GREETING = \"hi\" }\n");
    String readEnv =
        QueryScripts.udf(
                "import os\ndef read_env() -> str:\n    return os.getenv('GREETING', '')\n",
                "read_env")
            .result("STRING NULL")
            .render();
    DatabendClient.Resource apply;
    DatabendClient.Resource worker;
    try (RunningKiln kiln = RunningKiln.start(data, b -> b.set("udf-env", envFile.toString()))) {
      apply = kiln.api().apply("acme", addOne());
      worker = kiln.api().createWorker("acme", "read_env", readEnv, Duration.ofSeconds(5));
      assertThat(call(apply)).isEqualTo(ADDED);
    }
    try (RunningKiln kiln = RunningKiln.start(data, b -> b.set("udf-env", envFile.toString()))) {
      assertThat(running(kiln)).as("nothing starts before a call asks").isZero();
      assertThat(call(at(kiln, apply))).isEqualTo(ADDED);
      assertThat(
              KilnTestSupport.call(
                      allocator, at(kiln, worker), "acme", "read_env", List.of(), "[[]]")
                  .get(0)
                  .get(0))
          .as("a worker's UDF, with its environment read again")
          .isEqualTo("hi");
      assertThat(running(kiln)).isEqualTo(2);
      assertThat(kiln.api().apply("acme", addOne()).headers())
          .as("Databend's next ApplyUdfResource gets the same answer")
          .isEqualTo(apply.headers());
    }
  }

  @Test
  void aSandboxThatDiesIsReplacedOnTheNextCall() throws Exception {
    try (RunningKiln kiln = RunningKiln.start(dir.resolve("data"))) {
      DatabendClient.Resource r = kiln.api().apply("acme", addOne());
      assertThat(call(r)).isEqualTo(ADDED);
      UdfResource resource = kiln.server().registryForTests().all().iterator().next();
      String id = resource.sandbox().orElseThrow().id();

      // Killed from outside, as the kernel's OOM killer or an operator would.
      Process kill =
          new ProcessBuilder(
                  kiln.server().config().runsc(),
                  "--root=" + kiln.dataDir().resolve("provisioner/runsc"),
                  "kill",
                  id,
                  "KILL")
              .redirectErrorStream(true)
              .start();
      assertThat(kill.waitFor()).as(new String(kill.getInputStream().readAllBytes())).isZero();
      KilnTestSupport.eventually(
          "the sandbox stops", Duration.ofSeconds(30), () -> running(kiln) == 0);

      assertThat(call(r)).isEqualTo(ADDED);
      assertThat(kiln.server().registryForTests().all().iterator().next().sandbox().orElseThrow())
          .extracting(s -> s.id())
          .isNotEqualTo(id);
    }
  }

  @Test
  void aUdfWithoutAWorkerStopsWhenIdleAndItsNextCallStartsItAgain() throws Exception {
    try (RunningKiln kiln =
        RunningKiln.start(dir.resolve("data"), b -> b.set("auto-suspend", "1s"))) {
      DatabendClient.Resource r = kiln.api().apply("acme", addOne());
      assertThat(call(r)).isEqualTo(ADDED);
      KilnTestSupport.eventually(
          "the idle sandbox stops", Duration.ofSeconds(30), () -> running(kiln) == 0);
      assertThat(call(r)).isEqualTo(ADDED);
      assertThat(running(kiln)).isEqualTo(1);
    }
  }
}
