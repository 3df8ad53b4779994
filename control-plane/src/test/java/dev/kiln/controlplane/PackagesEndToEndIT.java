package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.assertFailsWithStatus;
import static dev.kiln.controlplane.KilnTestSupport.call;
import static dev.kiln.controlplane.KilnTestSupport.rows;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.definition.QueryScripts;
import dev.kiln.resolver.PipMirror;
import dev.kiln.resolver.StaticIndexServer;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.net.URI;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * UDFs that import real packages, end to end: requirements from {@code packages} and from a PEP 723
 * block, resolved against the local mirror of real cp311 manylinux wheels that pip on these
 * machines is configured with (served over HTTP by the test), one layer per wheel, a gVisor
 * sandbox, and values computed by numpy, pandas and humanize coming back over Flight.
 */
class PackagesEndToEndIT {
  @TempDir static Path dataDir;
  static StaticIndexServer mirror;
  static RunningKiln kiln;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void startKiln() throws Exception {
    mirror = new StaticIndexServer(PipMirror.fileIndexes());
    kiln =
        RunningKiln.start(
            dataDir,
            config -> config.indexUrls(mirror.indexUrls().stream().map(URI::toString).toList()));
  }

  @AfterAll
  static void stopKiln() throws Exception {
    if (kiln != null) {
      kiln.close();
    }
    if (mirror != null) {
      mirror.close();
    }
  }

  /** A spec as Databend writes it, with {@code packages}. */
  static String spec(
      String handler, String inputType, String resultType, List<String> packages, String code) {
    return KilnTestSupport.spec(handler, List.of(inputType), resultType, List.of(), packages, code);
  }

  @Test
  void numpyComputesInTheSandbox() throws Exception {
    String code =
        "import numpy as np\n"
            + "def np_triangle(n):\n"
            + "    return int(np.cumsum(np.arange(n + 1, dtype=np.int64))[-1])\n";
    DatabendClient.Resource r =
        kiln.api().apply("acme", spec("np_triangle", "BIGINT", "BIGINT", List.of("numpy"), code));
    assertThat(call(allocator, r, "acme", "np_triangle", List.of("BIGINT"), "[[4],[100],[0]]"))
        .isEqualTo(rows(10L, 5050L, 0L));
  }

  @Test
  void pandasWithItsDependencyTree() throws Exception {
    String code =
        "import pandas as pd\n"
            + "def day_name(s):\n"
            + "    return None if s is None else pd.Timestamp(s).day_name()\n";
    DatabendClient.Resource r =
        kiln.api()
            .apply(
                "acme",
                spec("day_name", "VARCHAR NULL", "VARCHAR NULL", List.of("pandas>=2"), code));
    assertThat(
            call(
                allocator,
                r,
                "acme",
                "day_name",
                List.of("VARCHAR NULL"),
                "[[\"2024-03-01\"],[null],[\"2000-01-01\"]]"))
        .isEqualTo(rows("Friday", null, "Saturday"));
  }

  @Test
  void humanizeFromAPep723Block() throws Exception {
    String code =
        "# /// script\n"
            + "# dependencies = [\"humanize\"]\n"
            + "# ///\n"
            + "import humanize\n"
            + "def commas(x):\n"
            + "    return humanize.intcomma(x)\n";
    DatabendClient.Resource r =
        kiln.api().apply("acme", spec("commas", "BIGINT", "VARCHAR", List.of(), code));
    assertThat(call(allocator, r, "acme", "commas", List.of("BIGINT"), "[[1234567],[12]]"))
        .isEqualTo(rows("1,234,567", "12"));
  }

  @Test
  void packagesAreImportedFromTheirLayersModuleBundleAndKeepTheirFiles() throws Exception {
    String code =
        "import humanize, humanize.number, inspect, os, pkgutil\n"
            + "def bundled(x):\n"
            + "    return ' '.join(str(v) for v in [\n"
            + "        type(humanize.__spec__.loader).__name__,\n"
            + "        type(humanize.number.__spec__.loader).__name__,\n"
            + "        os.path.isfile(humanize.number.__file__),\n"
            + "        inspect.getsource(humanize.number.intcomma).split('(')[0],\n"
            + "        'number' in [m.name for m in pkgutil.iter_modules(humanize.__path__)],\n"
            + "        humanize.intcomma(x)])\n";
    DatabendClient.Resource r =
        kiln.api().apply("acme", spec("bundled", "BIGINT", "VARCHAR", List.of("humanize"), code));
    assertThat(call(allocator, r, "acme", "bundled", List.of("BIGINT"), "[[1234]]"))
        .as("modules from the bundle, with their real files for inspect, pkgutil and tracebacks")
        .isEqualTo(rows("BundleLoader BundleLoader True def intcomma True 1,234"));
  }

  @Test
  void pep723DependenciesThenPackagesThroughCreateWorker() throws Exception {
    // Query puts the code's PEP 723 dependencies first, then PACKAGES, on one unquoted pip line.
    String code =
        "# /// script\n"
            + "# dependencies = [\"humanize>=4\"]\n"
            + "# ///\n"
            + "import humanize, six\n"
            + "def commas_six(x):\n"
            + "    return humanize.intcomma(x) + ('' if six.PY3 else '?')\n";
    String script =
        QueryScripts.udf(code, "commas_six")
            .inputs("INT64 NULL")
            .result("STRING NULL")
            .packages("six>=1.10")
            .render();
    assertThat(script).contains("python -m pip install --no-cache-dir humanize>=4 six>=1.10\n");
    DatabendClient.Resource r =
        kiln.api().createWorker("acme", "commas_six", script, java.time.Duration.ofSeconds(5));
    assertThat(call(allocator, r, "acme", "commas_six", List.of("BIGINT"), "[[1234567]]"))
        .isEqualTo(rows("1,234,567"));
  }

  @Test
  void badRequirementsAndUnknownPackagesAreClearErrors() {
    String code = "def f(x):\n    return x\n";
    assertFailsWithStatus(
        () -> kiln.api().apply("acme", spec("f", "INT", "INT", List.of("numpy>=>1"), code)),
        Status.Code.INVALID_ARGUMENT,
        "numpy>=>1");
    assertThatThrownBy(
            () ->
                kiln.api()
                    .apply(
                        "acme",
                        spec("f", "INT", "INT", List.of("surely-not-a-real-package"), code)))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode())
                  .isIn(Status.Code.INVALID_ARGUMENT, Status.Code.FAILED_PRECONDITION);
              assertThat(e.getStatus().getDescription())
                  .contains("no package named 'surely-not-a-real-package'");
            });
  }
}
