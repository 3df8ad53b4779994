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
 * The warm pool with real gVisor: a new UDF without packages is placed in a sandbox started ahead
 * of need (its runners already warm), its image is built after, and the pool refills; a warm
 * sandbox holds nothing of any UDF before it is assigned, so one UDF never sees another's files,
 * variables or processes.
 */
class WarmPoolIT {
  @TempDir Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  private static final String ADD_ONE =
      "def add_one(x):\n    return None if x is None else x + 1\n";

  private static double meter(RunningKiln kiln, String name) {
    var m = kiln.server().meters().find(name);
    return m.gauge() != null ? m.gauge().value() : m.functionCounter().count();
  }

  private static void poolFilled(RunningKiln kiln, int ready) {
    KilnTestSupport.eventually(
        "the warm pool holds " + ready,
        Duration.ofSeconds(60),
        () -> meter(kiln, "kiln.warm.pool.ready") == ready);
  }

  @Test
  void aNewUdfRunsInAWarmSandboxItsImageIsBuiltAfterAndThePoolRefills() throws Exception {
    try (RunningKiln kiln = RunningKiln.start(dir.resolve("data"), b -> b.set("warm-pool", "1"))) {
      poolFilled(kiln, 1);
      DatabendClient.Resource r =
          kiln.api().apply("acme", spec("add_one", List.of("BIGINT NULL"), "BIGINT NULL", ADD_ONE));

      assertThat(
              KilnTestSupport.call(
                  allocator, r, "acme", "add_one", List.of("BIGINT NULL"), "[[1],[null],[41]]"))
          .isEqualTo(List.of(List.of(2L), Arrays.asList((Object) null), List.of(42L)));
      assertThat(meter(kiln, "kiln.warm.pool.hits")).isEqualTo(1);
      Provisioned p =
          kiln.server().registryForTests().all().iterator().next().provisioned().orElseThrow();
      assertThat(p.warm()).isTrue();
      assertThat(p.sandbox().id()).contains("warm");
      KilnTestSupport.eventually(
          "the UDF's image is built", Duration.ofSeconds(60), () -> p.builtImage().isPresent());
      poolFilled(kiln, 1);
    }
  }

  @Test
  void aWarmSandboxShowsAUdfNothingOfAnother() throws Exception {
    Path envFile =
        Files.writeString(
            dir.resolve("udf_env.toml"),
            "[udf_env]\n\"acme.secret\" = { ACME_SECRET = \"alpha-7731\" }\n");
    String secret =
        QueryScripts.udf(
                "import os\n"
                    + "MARK = 'alpha-7731'\n"
                    + "def secret() -> str:\n"
                    + "    return os.getenv('ACME_SECRET', '')\n",
                "secret")
            .result("STRING NULL")
            .render();
    // Everything the second UDF can see: the variables its runner process started with, files
    // under /kiln and /tmp with their contents, its variables, and the command lines of every
    // process in its sandbox.
    String look =
        spec(
            "look",
            List.of(),
            "VARCHAR NULL",
            KilnTestSupport.lookAround(
                "",
                "'START: ' + open('/proc/self/environ', 'rb').read()"
                    + ".decode('latin-1').replace('\\x00', ' ')"));
    try (RunningKiln kiln =
        RunningKiln.start(
            dir.resolve("data"), b -> b.set("warm-pool", "2").set("udf-env", envFile.toString()))) {
      poolFilled(kiln, 2);
      DatabendClient.Resource first =
          kiln.api().createWorker("acme", "secret", secret, Duration.ofSeconds(5));
      assertThat(
              KilnTestSupport.call(allocator, first, "acme", "secret", List.of(), "[[]]")
                  .get(0)
                  .get(0))
          .as("the first UDF has its variable")
          .isEqualTo("alpha-7731");
      DatabendClient.Resource second = kiln.api().apply("other", look);
      String seen = KilnTestSupport.look(allocator, second, "other");

      assertThat(meter(kiln, "kiln.warm.pool.hits"))
          .as("both placed in warm sandboxes")
          .isEqualTo(2);
      assertThat(seen).contains("/kiln/udf/udf.py:import os\ndef look():");
      assertThat(seen.lines().findFirst().orElseThrow())
          .as("a warm runner started with glibc's tuning for batches (the image's variables)")
          .startsWith("START:")
          .contains(" MALLOC_MMAP_THRESHOLD_=8388608 ")
          .contains(" MALLOC_TRIM_THRESHOLD_=33554432 ");
      assertThat(seen).doesNotContain("alpha-7731").doesNotContain("ACME_SECRET");
      assertThat(seen).doesNotContain("def secret");
      assertThat(seen.lines().filter(l -> l.startsWith("PROC:")))
          .as("only the sandbox's init and its own runners")
          .allMatch(l -> l.contains("kiln_runner.py"));
    }
  }
}
