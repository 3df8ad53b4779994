package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.assertFailsWithStatus;
import static dev.kiln.controlplane.KilnTestSupport.call;
import static dev.kiln.controlplane.KilnTestSupport.rows;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
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
  static MirrorServer mirror;
  static RunningKiln kiln;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void startKiln() throws Exception {
    mirror = new MirrorServer(pipFileIndexes());
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

  /**
   * The file:// indexes pip is configured with ({@code pip config list}); fails with what to do
   * when there are none, since this test needs the mirror of real wheels.
   */
  static List<URI> pipFileIndexes() throws IOException, InterruptedException {
    Process p =
        new ProcessBuilder("python3", "-m", "pip", "config", "list")
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(60, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IllegalStateException("'python3 -m pip config list' failed: " + out);
    }
    Pattern setting = Pattern.compile("^[^.]*\\.(index-url|extra-index-url)='(.*)'$");
    List<URI> indexes = new ArrayList<>();
    for (String line : out.split("\n")) {
      Matcher m = setting.matcher(line.strip());
      if (!m.matches()) {
        continue;
      }
      for (String url : m.group(2).split("\\s+")) {
        if (url.startsWith("file:")
            && Files.isDirectory(Path.of(URI.create(url)))
            && !indexes.contains(URI.create(url))) {
          indexes.add(URI.create(url));
        }
      }
    }
    if (indexes.isEmpty()) {
      throw new IllegalStateException(
          "pip is not configured with a local file:// package index ('pip config list' shows"
              + " none); this test installs real wheels (numpy, pandas, humanize) from such a"
              + " PEP 503 mirror, e.g. 'pip config set global.extra-index-url"
              + " file:///opt/pypi/simple'. pip config list said:\n"
              + out);
    }
    return indexes;
  }

  /**
   * Serves PEP 503 directory trees over HTTP: each index's parent directory under its own prefix
   * (so links like {@code ../../files/x.whl} resolve), a directory answered by its index.html.
   */
  static final class MirrorServer implements AutoCloseable {
    private final HttpServer http;
    private final ExecutorService executor = Executors.newFixedThreadPool(4);
    private final List<Path> roots = new ArrayList<>();
    private final List<URI> urls = new ArrayList<>();

    MirrorServer(List<URI> fileIndexes) throws IOException {
      http = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
      http.setExecutor(executor);
      for (URI u : fileIndexes) {
        Path simple = Path.of(u).toAbsolutePath().normalize();
        urls.add(
            URI.create(
                "http://127.0.0.1:"
                    + http.getAddress().getPort()
                    + "/i"
                    + roots.size()
                    + "/"
                    + simple.getFileName()
                    + "/"));
        roots.add(simple.getParent());
      }
      http.createContext("/", this::handle);
      http.start();
    }

    List<URI> indexUrls() {
      return List.copyOf(urls);
    }

    private void handle(HttpExchange ex) throws IOException {
      try (ex) {
        String[] parts = ex.getRequestURI().getPath().split("/", 3);
        Path file = null;
        if (parts.length == 3 && parts[1].matches("i\\d+")) {
          int n = Integer.parseInt(parts[1].substring(1));
          if (n < roots.size()) {
            Path p = roots.get(n).resolve(parts[2]).normalize();
            if (p.startsWith(roots.get(n))) {
              file = Files.isDirectory(p) ? p.resolve("index.html") : p;
            }
          }
        }
        if (file == null || !Files.isRegularFile(file)) {
          ex.sendResponseHeaders(404, -1);
          return;
        }
        ex.getResponseHeaders()
            .add(
                "Content-Type",
                file.toString().endsWith(".html")
                    ? "text/html; charset=utf-8"
                    : "application/octet-stream");
        ex.sendResponseHeaders(200, Files.size(file));
        try (OutputStream out = ex.getResponseBody()) {
          Files.copy(file, out);
        }
      }
    }

    @Override
    public void close() {
      http.stop(0);
      executor.shutdownNow();
    }
  }
}
