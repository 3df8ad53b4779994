package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest;
import dev.kiln.controlplane.proto.resource.CreateWorkerRequest;
import dev.kiln.definition.QueryScripts;
import dev.kiln.egress.TestTls;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * UDFs that call out, end to end: real gVisor sandboxes on networks of their own whose only route
 * is Kiln's egress proxy, real HTTP and HTTPS servers on this machine's loopback (the only network
 * here) under names the proxy resolves from an {@code --egress-hosts} file. The deny list is the
 * test's own ({@code 127.0.0.2} and the metadata range) so that loopback stands in for the
 * internet. A worker's {@code egress} option on the CreateWorker door, the operator's {@code
 * --egress-policy} file on the ApplyUdfResource door; a UDF without either has no network.
 */
class EgressEndToEndIT {
  @TempDir static Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  static HttpServer http;
  static HttpsServer https;
  static RunningKiln kiln;
  static Path policy;

  /** Fetches a URL with the standard library (HTTPS certificate unchecked: the test's own). */
  static final String FETCH =
      """
      import ssl
      import urllib.request

      def fetch(url: str) -> str:
          try:
              with urllib.request.urlopen(
                  url, timeout=20, context=ssl._create_unverified_context()
              ) as r:
                  return r.read().decode()
          except Exception as e:
              return "ERROR " + str(e)
      """;

  @BeforeAll
  static void start() throws Exception {
    networksBefore = networks();
    http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    http.createContext("/hello", ex -> reply(ex, "hello over http"));
    http.start();
    https = HttpsServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    https.setHttpsConfigurator(new HttpsConfigurator(TestTls.selfSigned(dir, "api.allowed.test")));
    https.createContext("/hello", ex -> reply(ex, "hello over https"));
    https.start();
    Path hosts =
        Files.writeString(
            dir.resolve("hosts"),
            """
            127.0.0.1 api.allowed.test a.b.wild.test evil.test
            127.0.0.2 meta.allowed.test  # a name that resolves to a denied address
            """);
    policy =
        Files.writeString(
            dir.resolve("egress.toml"),
            """
            [udf_egress]
            "acme.fetch" = ["api.allowed.test"]
            """);
    kiln =
        RunningKiln.start(
            dir.resolve("data"),
            b ->
                b.set("egress-hosts", hosts.toString())
                    .set("egress-deny", "127.0.0.2/32,169.254.0.0/16")
                    .set("egress-policy", policy.toString()));
  }

  @AfterAll
  static void stop() throws Exception {
    if (kiln != null) {
      kiln.close();
    }
    http.stop(0);
    https.stop(0);
    // Each sandbox's network went with it.
    KilnTestSupport.eventually(
        "the sandboxes' networks are deleted",
        Duration.ofSeconds(10),
        () -> networks().equals(networksBefore));
  }

  static List<String> networksBefore;

  /** The sandbox network namespaces on this machine. */
  static List<String> networks() {
    try (var s = Files.list(Path.of("/run/netns"))) {
      return s.map(p -> p.getFileName().toString())
          .filter(n -> n.startsWith("kiln-net-"))
          .sorted()
          .toList();
    } catch (IOException e) {
      return List.of();
    }
  }

  private static void reply(HttpExchange ex, String body) throws IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    ex.sendResponseHeaders(200, b.length);
    try (OutputStream o = ex.getResponseBody()) {
      o.write(b);
    }
  }

  private String fetch(DatabendClient.Resource r, String url) throws Exception {
    return fetch(allocator, r, url);
  }

  /** What {@link #FETCH} answers for {@code url}, called as Databend calls it. */
  static String fetch(BufferAllocator allocator, DatabendClient.Resource r, String url)
      throws Exception {
    return String.valueOf(
        KilnTestSupport.call(
                allocator,
                r,
                "acme",
                "fetch",
                List.of("STRING NULL"),
                KilnTestSupport.JSON.writeValueAsString(List.of(List.of(url))))
            .get(0)
            .get(0));
  }

  /**
   * The UDF {@link #FETCH} as tenant acme's worker {@code fetcher}, made first by {@code CREATE
   * WORKER fetcher WITH egress = 'EGRESS'}.
   */
  static DatabendClient.Resource fetcher(DatabendClient api, String egress) {
    api.workers("acme", Duration.ofSeconds(5))
        .createWorker(
            CreateWorkerRequest.newBuilder()
                .setTenantId("acme")
                .setName("fetcher")
                .putOptions("egress", egress)
                .build());
    return api.createWorker("acme", "fetcher", script(), Duration.ofSeconds(5));
  }

  private static String script() {
    return QueryScripts.udf(FETCH, "fetch").inputs("STRING NULL").result("STRING NULL").render();
  }

  private static String logs(DatabendClient.Resource r) throws Exception {
    return admin("/udfs/" + r.key().substring(0, 12) + "/logs");
  }

  private static String admin(String path) throws Exception {
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(
                    URI.create("http://127.0.0.1:" + kiln.server().adminPort() + path))
                .build(),
            HttpResponse.BodyHandlers.ofString())
        .body();
  }

  @Test
  void aWorkersAllowListLetsItsHostsThroughAndRefusesTheRestSayingWhatToChange() throws Exception {
    DatabendClient.Resource r =
        fetcher(kiln.api(), "api.allowed.test,*.wild.test,meta.allowed.test");
    int port = http.getAddress().getPort();
    int tls = https.getAddress().getPort();

    assertThat(fetch(r, "http://api.allowed.test:" + port + "/hello")).isEqualTo("hello over http");
    assertThat(fetch(r, "https://api.allowed.test:" + tls + "/hello"))
        .isEqualTo("hello over https");
    assertThat(fetch(r, "http://a.b.wild.test:" + port + "/hello"))
        .as("a wildcard over two labels")
        .isEqualTo("hello over http");

    long t0 = System.nanoTime();
    String denied = fetch(r, "http://evil.test:" + port + "/hello");
    long answered = System.nanoTime();
    assertThat(denied)
        .startsWith("ERROR HTTP Error 403")
        .contains("evil.test:" + port + " is not in the egress allow-list of worker fetcher")
        .contains(
            "ALTER WORKER fetcher SET egress ="
                + " 'api.allowed.test,*.wild.test,meta.allowed.test,evil.test'");
    String log = logs(r);
    long logged = System.nanoTime();
    assertThat(log)
        .as("the refusal is in kiln logs as soon as the UDF has it")
        .contains("kiln egress: refused: evil.test:" + port + " is not in the egress allow-list");
    System.out.printf(
        "egress end to end: a denied GET answered in the UDF in %.1f ms; its line read from"
            + " kiln logs %.1f ms after that%n",
        (answered - t0) / 1e6, (logged - answered) / 1e6);

    String metrics = admin("/metrics");
    assertThat(metrics)
        .as("bytes through the proxy are counted per worker")
        .containsPattern(
            "kiln_egress_bytes_total\\{direction=\"received\",tenant=\"acme\",worker=\"fetcher\",?\\}"
                + " [1-9]");

    // The fix the refusal names, then the next query: a new sandbox with the longer list.
    kiln.api()
        .workers("acme", Duration.ofSeconds(5))
        .alterWorker(
            AlterWorkerRequest.newBuilder()
                .setTenantId("acme")
                .setName("fetcher")
                .putSetOptions("egress", "api.allowed.test,*.wild.test,meta.allowed.test,evil.test")
                .build());
    DatabendClient.Resource altered =
        kiln.api().createWorker("acme", "fetcher", script(), Duration.ofSeconds(5));
    assertThat(altered.key()).as("a new list: a new resource").isNotEqualTo(r.key());
    assertThat(fetch(altered, "http://evil.test:" + port + "/hello")).isEqualTo("hello over http");

    assertThat(fetch(r, "https://evil.test:" + tls + "/hello"))
        .as("HTTPS to a name not in the list: the tunnel is refused")
        .startsWith("ERROR")
        .contains("403");
    assertThat(fetch(r, "http://meta.allowed.test:" + port + "/hello"))
        .as("an allowed name that resolves to a denied address")
        .contains("403")
        .contains("resolves to 127.0.0.2");
    assertThat(fetch(r, "http://127.0.0.3:" + port + "/hello"))
        .as("a raw address not in the list")
        .contains("403")
        .contains("127.0.0.3:" + port + " is not in the egress allow-list");
  }

  @Test
  void aUdfWithoutAnAllowListHasNoNetworkAtAll() throws Exception {
    DatabendClient.Resource r =
        kiln.api().createWorker("acme", "isolated", script(), Duration.ofSeconds(5));
    String out = fetch(r, "http://127.0.0.1:" + http.getAddress().getPort() + "/hello");
    assertThat(out).startsWith("ERROR").doesNotContain("hello");
  }

  @Test
  void theOperatorsPolicyFileGrantsAnApplyUdfResourceUdfByItsHandler() throws Exception {
    DatabendClient.Resource r =
        kiln.api()
            .apply(
                "acme",
                KilnTestSupport.spec("fetch", List.of("STRING NULL"), "STRING NULL", FETCH));
    int port = http.getAddress().getPort();
    assertThat(fetch(r, "http://api.allowed.test:" + port + "/hello")).isEqualTo("hello over http");
    assertThat(fetch(r, "http://evil.test:" + port + "/hello"))
        .contains("403")
        .contains("is not in the egress allow-list of UDF fetch")
        .contains(
            "add \"evil.test\" to the entry \"acme.fetch\" of the egress policy file "
                + policy.toAbsolutePath());
  }
}
