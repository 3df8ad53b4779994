package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.QueryScripts;
import dev.kiln.resolver.PipMirror;
import dev.kiln.resolver.StaticIndexServer;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Zygotes with real gVisor and real wheels (the machine's local mirror, served over HTTP): after a
 * UDF with a package set starts, a sandbox of that set is kept ready with the packages imported;
 * the next new UDF with the set (another tenant's) is placed in it, finds the packages imported,
 * and sees nothing of the first UDF: not its files, variables or processes.
 */
class ZygotesIT {
  @TempDir Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  private static double meter(RunningKiln kiln, String name) {
    var m = kiln.server().meters().find(name);
    return m.gauge() != null ? m.gauge().value() : m.functionCounter().count();
  }

  @Test
  void theNextUdfWithAPackageSetFindsItImportedAndNothingOfTheFirst() throws Exception {
    Path envFile =
        Files.writeString(
            dir.resolve("udf_env.toml"),
            "[udf_env]\n\"acme.secret\" = { ACME_SECRET = \"alpha-7731\" }\n");
    String secret =
        QueryScripts.udf(
                "import os, humanize\n"
                    + "MARK = 'alpha-7731'\n"
                    + "def secret() -> str:\n"
                    + "    return os.getenv('ACME_SECRET', '') + humanize.intcomma(1000)\n",
                "secret")
            .result("STRING NULL")
            .packages("humanize")
            .render();
    // What the second UDF can see: whether humanize was imported before its code ran, files
    // under /kiln and /tmp with their contents, its variables, every process's command line.
    String look =
        spec(
            "look",
            List.of(),
            "VARCHAR NULL",
            List.of(),
            List.of("humanize"),
            KilnTestSupport.lookAround(
                "import sys\nPRELOADED = 'humanize' in sys.modules\nimport humanize\n",
                "'PRELOADED:%s %s' % (PRELOADED, humanize.intcomma(1000))"));
    try (StaticIndexServer mirror = new StaticIndexServer(PipMirror.fileIndexes());
        RunningKiln kiln =
            RunningKiln.start(
                dir.resolve("data"),
                b ->
                    b.set("zygotes", "1")
                        .set("udf-env", envFile.toString())
                        .indexUrls(mirror.indexUrls().stream().map(URI::toString).toList()))) {
      DatabendClient.Resource first =
          kiln.api().createWorker("acme", "secret", secret, Duration.ofSeconds(120));
      assertThat(
              KilnTestSupport.call(allocator, first, "acme", "secret", List.of(), "[[]]")
                  .get(0)
                  .get(0))
          .isEqualTo("alpha-77311,000");
      KilnTestSupport.eventually(
          "a zygote of humanize is ready",
          Duration.ofSeconds(90),
          () -> meter(kiln, "kiln.zygotes.ready") == 1);
      String admin = "http://127.0.0.1:" + kiln.server().adminPort();
      var ps = KilnTestSupport.JSON.readTree(KilnTestSupport.cli("ps", "--json", "--admin", admin));
      assertThat(ps).hasSize(2);
      assertThat(ps.get(1).path("handler").asText()).startsWith("(zygote) humanize==");
      assertThat(ps.get(1).path("state").asText()).isEqualTo("ready");
      assertThat(ps.get(1).path("tenant").isNull()).isTrue();
      assertThat(ps.get(1).path("memory_bytes").asLong())
          .as("memory in use, from the sandbox's cgroup")
          .isBetween(1L << 20, ps.get(1).path("memory_limit_bytes").asLong());
      assertThat(KilnTestSupport.cli("ps", "--admin", admin))
          .containsPattern("- +\\(zygote\\) humanize==\\S+ +- +ready ");

      DatabendClient.Resource second = kiln.api().apply("other", look);
      String seen = KilnTestSupport.look(allocator, second, "other");

      assertThat(meter(kiln, "kiln.zygotes.hits")).as("placed in the zygote").isEqualTo(1);
      assertThat(seen).startsWith("PRELOADED:True 1,000");
      assertThat(seen).contains("/kiln/udf/udf.py:import os\nimport sys\nPRELOADED =");
      assertThat(seen).doesNotContain("alpha-7731").doesNotContain("ACME_SECRET");
      assertThat(seen).doesNotContain("def secret");
      assertThat(seen.lines().filter(l -> l.startsWith("ENV:")))
          .singleElement(org.assertj.core.api.InstanceOfAssertFactories.STRING)
          .as("the preload's own variable is gone")
          .doesNotContain("KILN_PRELOAD");
      assertThat(seen.lines().filter(l -> l.startsWith("PROC:")))
          .as("only the sandbox's init and its own runners")
          .allMatch(l -> l.contains("kiln_runner.py"));
      Provisioned p =
          kiln.server().registryForTests().all().stream()
              .filter(r -> r.definition.handler().equals("look"))
              .findFirst()
              .orElseThrow()
              .provisioned()
              .orElseThrow();
      assertThat(p.warm()).isTrue();
      assertThat(p.sandbox().id()).contains("zygote");
      KilnTestSupport.eventually(
          "the UDF's own image is built after",
          Duration.ofSeconds(60),
          () -> p.builtImage().isPresent());
      KilnTestSupport.eventually(
          "the zygote is refilled",
          Duration.ofSeconds(90),
          () -> meter(kiln, "kiln.zygotes.ready") == 1);
    }
  }
}
