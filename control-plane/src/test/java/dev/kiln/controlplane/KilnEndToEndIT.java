package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.assertFailsWithStatus;
import static dev.kiln.controlplane.KilnTestSupport.call;
import static dev.kiln.controlplane.KilnTestSupport.rows;
import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStatusCode;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * The whole path with real components: ApplyUdfResource over gRPC, a Jib-built image, a gVisor
 * (runsc) sandbox, the in-sandbox Python runner, and Arrow Flight DoExchange as Databend calls it.
 */
class KilnEndToEndIT {
  private static final HttpClient HTTP = HttpClient.newHttpClient();

  @TempDir static Path dataDir;
  static RunningKiln kiln;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void startKiln() throws Exception {
    kiln = RunningKiln.start(dataDir);
  }

  @AfterAll
  static void stopKiln() throws Exception {
    if (kiln != null) {
      kiln.close();
    }
  }

  private List<List<Object>> roundTrip(
      String handler, String type, String resultType, String code, String rows) throws Exception {
    DatabendClient.Resource r =
        kiln.api().apply("acme", spec(handler, List.of(type), resultType, code));
    return call(allocator, r, "acme", handler, List.of(type), rows);
  }

  @Test
  void intWithNulls() throws Exception {
    String code = "def add_one(x):\n    return None if x is None else x + 1\n";
    assertThat(roundTrip("add_one", "INT NULL", "INT NULL", code, "[[1],[null],[-5],[2147483646]]"))
        .isEqualTo(rows(2, null, -4, 2147483647));
  }

  @Test
  void bigintNotNull() throws Exception {
    String code = "def twice(x):\n    return x * 2\n";
    assertThat(
            roundTrip(
                "twice", "BIGINT NOT NULL", "BIGINT NOT NULL", code, "[[1],[4000000000],[-3]]"))
        .isEqualTo(rows(2L, 8000000000L, -6L));
  }

  @Test
  void booleanWithNulls() throws Exception {
    String code = "def negate(b):\n    return None if b is None else not b\n";
    assertThat(roundTrip("negate", "BOOLEAN NULL", "BOOLEAN NULL", code, "[[true],[false],[null]]"))
        .isEqualTo(rows(false, true, null));
  }

  @Test
  void doubleWithNulls() throws Exception {
    String code = "import math\ndef root(x):\n    return None if x is None else math.sqrt(x)\n";
    assertThat(roundTrip("root", "DOUBLE NULL", "DOUBLE NULL", code, "[[4.0],[null],[2.25]]"))
        .isEqualTo(rows(2.0, null, 1.5));
  }

  @Test
  void varcharWithNullsArrivesAsUtf8View() throws Exception {
    String code = "def shout(s):\n    return None if s is None else s.upper() + '!'\n";
    assertThat(
            roundTrip("shout", "VARCHAR NULL", "VARCHAR NULL", code, "[[\"héllo\"],[null],[\"\"]]"))
        .isEqualTo(rows("HÉLLO!", null, "!"));
  }

  @Test
  void varcharNotNullTwoArguments() throws Exception {
    String code = "def join(a, b):\n    return a + '-' + b\n";
    DatabendClient.Resource r =
        kiln.api()
            .apply(
                "acme",
                spec(
                    "join",
                    List.of("VARCHAR NOT NULL", "VARCHAR NOT NULL"),
                    "VARCHAR NOT NULL",
                    code));
    assertThat(
            call(
                allocator,
                r,
                "acme",
                "join",
                List.of("VARCHAR NOT NULL", "VARCHAR NOT NULL"),
                "[[\"a\",\"b\"],[\"x\",\"\"]]"))
        .isEqualTo(rows("a-b", "x-"));
  }

  @Test
  void repeatedApplyReturnsTheSameAnswerAndTenantsGetTheirOwnToken() {
    String s = spec("ident", List.of("INT NULL"), "INT NULL", "def ident(x):\n    return x\n");
    DatabendClient.Resource first = kiln.api().apply("acme", s);
    DatabendClient.Resource again = kiln.api().apply("acme", s);
    assertThat(again).isEqualTo(first);
    assertThat(first.endpoint()).isEqualTo(kiln.server().endpoint());
    DatabendClient.Resource other = kiln.api().apply("globex", s);
    assertThat(other.endpoint()).isEqualTo(first.endpoint());
    assertThat(other.headers()).isNotEqualTo(first.headers());
    assertThat(first.key()).isEqualTo(other.key()).hasSize(64);
  }

  @Test
  void anotherTenantsTokenIsRefused() throws Exception {
    String s = spec("ident2", List.of("INT NULL"), "INT NULL", "def ident2(x):\n    return x\n");
    DatabendClient.Resource acme = kiln.api().apply("acme", s);
    assertThatThrownBy(
            () -> call(allocator, acme, "globex", "ident2", List.of("INT NULL"), "[[1]]"))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.UNAUTHORIZED));
  }

  @Test
  void badRequestsFailFastWithClearErrors() {
    assertFailsWithStatus(
        () -> kiln.api().apply("acme", "{not json"),
        Status.Code.INVALID_ARGUMENT,
        "not valid JSON");
    assertFailsWithStatus(
        () ->
            kiln.api().apply("acme", spec("f", List.of("INTEGRAL NULL"), "INT", "def f(x): pass")),
        Status.Code.INVALID_ARGUMENT,
        "input_types[0]",
        "'INTEGRAL' is not a type name");
    assertFailsWithStatus(
        () ->
            kiln.api()
                .apply("acme", spec("missing", List.of("INT"), "INT", "def present(x): pass")),
        Status.Code.INVALID_ARGUMENT,
        "does not define 'missing'",
        "present");
  }

  @Test
  void codeThatFailsToLoadIsReportedOnApply() {
    String s = spec("broken", List.of("INT"), "INT", "def broken(x):\n    return x +\n");
    assertFailsWithStatus(
        () -> kiln.api().apply("acme", s),
        Status.Code.FAILED_PRECONDITION,
        "SyntaxError",
        "line 2");
    // Asking again gives the same answer at once, without building again.
    assertThatThrownBy(() -> kiln.api().apply("acme", s)).hasMessageContaining("SyntaxError");
  }

  @Test
  void pythonExceptionReachesTheCallerWithTypeAndMessage() throws Exception {
    String code = "def inverse(x):\n    return 1 // x\n";
    DatabendClient.Resource r =
        kiln.api().apply("acme", spec("inverse", List.of("INT"), "INT", code));
    assertThatThrownBy(() -> call(allocator, r, "acme", "inverse", List.of("INT"), "[[1],[0]]"))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e ->
                assertThat(e.status().description())
                    .contains("ZeroDivisionError")
                    .contains("division")
                    .contains("line 2"));
    assertThat(call(allocator, r, "acme", "inverse", List.of("INT"), "[[1]]")).isEqualTo(rows(1));
  }

  @Test
  void aCrashingRunnerFailsThatCallAndTheNextCallWorks() throws Exception {
    String code = "import os\ndef crash(x):\n    if x == 13:\n        os.abort()\n    return x\n";
    DatabendClient.Resource r =
        kiln.api().apply("acme", spec("crash", List.of("INT"), "INT", code));
    assertThat(call(allocator, r, "acme", "crash", List.of("INT"), "[[1]]")).isEqualTo(rows(1));
    assertThatThrownBy(() -> call(allocator, r, "acme", "crash", List.of("INT"), "[[13]]"))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().description()).contains("SIGABRT"));
    assertThat(call(allocator, r, "acme", "crash", List.of("INT"), "[[2]]")).isEqualTo(rows(2));
  }

  @Test
  void aCallMadeBeforeTheSandboxIsReadyWaitsAndSucceeds() throws Exception {
    // A second server that never waits on Apply, so the call surely arrives during the build.
    try (KilnServer eager =
            KilnServer.start(
                KilnTestSupport.testConfig(dataDir.resolve("eager"))
                    .applyWait(Duration.ZERO)
                    .build());
        DatabendClient eagerApi = KilnTestSupport.client(eager)) {
      String code = "def early(x):\n    return x * 10\n";
      DatabendClient.Resource r =
          eagerApi.apply("acme", spec("early", List.of("INT"), "INT", code));
      UdfResource resource = eager.registryForTests().all().iterator().next();
      assertThat(resource.ready()).as("sandbox already ready when the call starts").isNotDone();
      assertThat(call(allocator, r, "acme", "early", List.of("INT"), "[[1],[2]]"))
          .isEqualTo(rows(10, 20));
    }
  }

  @Test
  void whatTheUdfPrintsIsKeptAndShownByTheAdminPort() throws Exception {
    String code =
        "import sys\ndef chatty(x):\n    print('saw', x)\n    print('to stderr', x,"
            + " file=sys.stderr)\n    return x\n";
    DatabendClient.Resource r =
        kiln.api().apply("acme", spec("chatty", List.of("INT"), "INT", code));
    assertThat(call(allocator, r, "acme", "chatty", List.of("INT"), "[[7]]")).isEqualTo(rows(7));
    String udf = "/udfs/" + r.key().substring(0, 12);
    HttpResponse<String> logs = adminGet(udf + "/logs");
    assertThat(logs.statusCode()).isEqualTo(200);
    assertThat(logs.body()).contains("saw 7").contains("to stderr 7");
    HttpResponse<String> health = adminGet(udf + "/health");
    assertThat(health.body()).isEqualTo("1\n");
    HttpResponse<String> stats = adminGet(udf + "/stats");
    var json = KilnTestSupport.JSON.readTree(stats.body());
    assertThat(json.get("request_count").asLong()).isEqualTo(1);
    assertThat(json.get("first_request_time").asText()).isNotBlank();
    assertThat(json.get("last_request_time").asText()).isNotBlank();

    // The same through the CLI, as an SRE would ask: by key prefix and by token.
    String admin = "http://127.0.0.1:" + kiln.server().adminPort();
    assertThat(KilnTestSupport.cli("logs", "--admin", admin, r.key().substring(0, 8)))
        .contains("saw 7");
    assertThat(KilnTestSupport.cli("logs", "--admin", admin, r.headers().get("x-kiln-token")))
        .contains("to stderr 7");
    assertThat(KilnTestSupport.cli("cache", "stats", "--admin", admin))
        .contains("memory")
        .contains("local")
        .contains("hits")
        .contains("Disk use under the data directory")
        .containsPattern("extracted-layers +[0-9.]+ +[0-9]+");
    var cacheStats =
        KilnTestSupport.JSON.readTree(
            KilnTestSupport.cli("cache", "stats", "--json", "--admin", admin));
    assertThat(cacheStats.path("disk").path("images").path("bytes").asLong())
        .as("the OCI layout holds the UDFs' images")
        .isPositive();
    assertThat(cacheStats.path("disk").path("records").path("files").asLong())
        .as("token secret, lock, workers, kept definitions")
        .isGreaterThanOrEqualTo(3);
  }

  @Test
  void theCliAsksThroughCreateWorkerAndListsWorkersWithTheirHealthAndStats() throws Exception {
    String grpc = "127.0.0.1:" + kiln.server().grpcPort();
    var answer =
        KilnTestSupport.JSON.readTree(
            KilnTestSupport.cli(
                "apply",
                "--server",
                grpc,
                "--tenant",
                "cli",
                "--script",
                "../examples/add_one.sh",
                "--name",
                "add_one"));
    Map<String, String> headers = new java.util.TreeMap<>();
    answer.get("headers").properties().forEach(e -> headers.put(e.getKey(), e.getValue().asText()));
    DatabendClient.Resource r =
        new DatabendClient.Resource(
            answer.get("endpoint").asText(), headers, answer.get("key").asText());
    assertThat(call(allocator, r, "cli", "add_one", List.of("INT NULL"), "[[41],[null]]"))
        .isEqualTo(rows(42, null));
    var workers =
        KilnTestSupport.JSON.readTree(
            KilnTestSupport.cli("workers", "--server", grpc, "--tenant", "cli", "--json"));
    assertThat(workers).extracting(w -> w.get("name").asText()).containsExactly("add_one");
    assertThat(adminGet("/workers/cli/add_one/health").body()).isEqualTo("1\n");
    var stats = KilnTestSupport.JSON.readTree(adminGet("/workers/cli/add_one/stats").body());
    assertThat(stats.get("request_count").asLong()).isEqualTo(1);
    assertThat(adminGet("/workers/cli/nobody/health").statusCode()).isEqualTo(404);
    // The spec of the same function, sent as Query would render it: the same definition and key.
    var fromSpec =
        KilnTestSupport.JSON.readTree(
            KilnTestSupport.cli(
                "apply",
                "--server",
                grpc,
                "--tenant",
                "cli",
                "--protocol",
                "worker",
                "--spec",
                "../examples/add_one.json",
                "--name",
                "add_one"));
    assertThat(fromSpec.get("key").asText()).isEqualTo(answer.get("key").asText());
  }

  @Test
  void adminPortServesHealthAndMetrics() throws Exception {
    HttpResponse<String> health = adminGet("/healthz");
    assertThat(health.statusCode()).isEqualTo(200);
    kiln.api().apply("acme", spec("m", List.of("INT"), "INT", "def m(x):\n    return x\n"));
    HttpResponse<String> metrics = adminGet("/metrics");
    assertThat(metrics.statusCode()).isEqualTo(200);
    assertThat(metrics.body())
        .contains("kiln_apply_requests_total")
        .contains("kiln_apply_seconds")
        .contains("kiln_cache_hits_total");
    HttpResponse<String> cache = adminGet("/cache/stats");
    assertThat(cache.statusCode()).isEqualTo(200);
    var tiers = KilnTestSupport.JSON.readTree(cache.body()).get("tiers");
    assertThat(tiers).extracting(t -> t.get("tier").asText()).contains("memory", "local");
  }

  @Test
  void theGrafanaDashboardQueriesOnlyWhatTheServerExportsNamedAsPrometheusAsks() throws Exception {
    // Traffic that makes every metric the dashboard shows appear: a call that works, one that
    // fails in the UDF, both for one tenant.
    DatabendClient.Resource ok =
        kiln.api()
            .apply(
                "acme", spec("dash_ok", List.of("INT"), "INT", "def dash_ok(x):\n    return x\n"));
    assertThat(call(allocator, ok, "acme", "dash_ok", List.of("INT"), "[[1]]")).isEqualTo(rows(1));
    DatabendClient.Resource bad =
        kiln.api()
            .apply(
                "acme",
                spec("dash_bad", List.of("INT"), "INT", "def dash_bad(x):\n    return 1 // 0\n"));
    assertThatThrownBy(() -> call(allocator, bad, "acme", "dash_bad", List.of("INT"), "[[1]]"))
        .isInstanceOf(FlightRuntimeException.class);

    String page = adminGet("/metrics").body();
    PrometheusText metrics = PrometheusText.parse(page);
    Set<String> queried =
        PrometheusText.dashboardMetrics(Path.of("..", "deploy", "grafana", "kiln.json"));
    assertThat(queried).as("the dashboard's metrics").hasSizeGreaterThan(30);
    assertThat(metrics.samples).as("exported by a running server").containsAll(queried);
    // What the dashboard groups by: calls, rows and errors per tenant and UDF, cache per tier.
    assertThat(page.lines())
        .anySatisfy(
            l ->
                assertThat(l)
                    .startsWith("kiln_worker_batches_total{")
                    .contains("handler=\"dash_ok\"")
                    .contains("tenant=\"acme\""))
        .anySatisfy(
            l ->
                assertThat(l)
                    .startsWith("kiln_worker_errors_total{")
                    .contains("handler=\"dash_bad\"")
                    .contains("tenant=\"acme\""))
        .anySatisfy(l -> assertThat(l).startsWith("kiln_cache_hits_total{").contains("tier="));
    assertThat(metrics.kilnConventionViolations()).isEmpty();
  }

  /** GETs {@code path} from the server's admin port. */
  private static HttpResponse<String> adminGet(String path) throws Exception {
    String url = "http://127.0.0.1:" + kiln.server().adminPort() + path;
    return HTTP.send(
        HttpRequest.newBuilder(URI.create(url)).build(), HttpResponse.BodyHandlers.ofString());
  }
}
