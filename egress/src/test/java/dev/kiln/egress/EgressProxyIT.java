package dev.kiln.egress;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.net.httpserver.HttpServer;
import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManager;
import javax.net.ssl.X509TrustManager;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The egress proxy with real servers and a real client on loopback (the machine has no other
 * network): an HTTP and an HTTPS server (JDK servers, a certificate keytool makes), curl as the
 * client, names mapped to loopback addresses by the proxy's resolver table as a DNS server would.
 * 127.0.0.2 stands for a private address the operator denies.
 */
class EgressProxyIT {
  @TempDir static Path dir;
  static HttpServer http;
  static HttpsServer https;
  static EgressProxy proxy;
  static EgressProxy.Resolver table;
  static final List<EgressProxy.Denial> denials = new CopyOnWriteArrayList<>();
  static final List<Long> deniedAt = new CopyOnWriteArrayList<>();
  static final Map<String, String> names =
      Map.of(
          "api.allowed.test", "127.0.0.1",
          "a.b.wild.test", "127.0.0.1",
          "wild.test", "127.0.0.1",
          "evil.test", "127.0.0.1",
          "meta.allowed.test", "127.0.0.2");

  @BeforeAll
  static void start() throws Exception {
    http = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    http.createContext("/hello", ex -> reply(ex, "hello over http"));
    http.start();
    https = HttpsServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    https.setHttpsConfigurator(new HttpsConfigurator(TestTls.selfSigned(dir, "api.allowed.test")));
    https.createContext("/hello", ex -> reply(ex, "hello over https"));
    https.start();
    table =
        host -> {
          String a = names.get(host);
          if (a != null) {
            return List.of(InetAddress.getByName(a));
          }
          if (host.matches("[0-9.]+") || host.contains(":")) {
            return List.of(InetAddress.getByName(host)); // a literal: nothing looked up
          }
          throw new UnknownHostException(host);
        };
    proxy =
        EgressProxy.start(
            new InetSocketAddress("127.0.0.1", 0),
            DenyList.parse(List.of("127.0.0.2", "169.254.0.0/16")),
            table,
            d -> {
              deniedAt.add(System.nanoTime());
              denials.add(d);
            });
  }

  @AfterAll
  static void stop() {
    proxy.close();
    http.stop(0);
    https.stop(0);
  }

  private static void reply(com.sun.net.httpserver.HttpExchange ex, String body)
      throws java.io.IOException {
    byte[] b = body.getBytes(StandardCharsets.UTF_8);
    ex.sendResponseHeaders(200, b.length);
    try (OutputStream o = ex.getResponseBody()) {
      o.write(b);
    }
  }

  /** Writes a request head to the proxy: {@code line}, {@code host}, the token's credentials. */
  private static void send(Socket s, String token, String line, String host) throws Exception {
    String auth =
        Base64.getEncoder().encodeToString(("kiln:" + token).getBytes(StandardCharsets.US_ASCII));
    s.getOutputStream()
        .write(
            (line + "\r\n" + host + "\r\nProxy-Authorization: Basic " + auth + "\r\n\r\n")
                .getBytes(StandardCharsets.US_ASCII));
  }

  /** curl through the proxy with {@code token}: exit code, then what it printed. */
  private static List<String> curl(String token, String url) throws Exception {
    return curlVia(proxy.url("127.0.0.1", token), url);
  }

  /** curl through the proxy at {@code proxyUrl}. */
  private static List<String> curlVia(String proxyUrl, String url) throws Exception {
    List<String> argv =
        new ArrayList<>(
            List.of("curl", "-sS", "-k", "-i", "--max-time", "20", "--proxy", proxyUrl, url));
    Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    return List.of(Integer.toString(p.exitValue()), out);
  }

  private static String token(String worker, String egress) throws Exception {
    return proxy.admit(
        new EgressProxy.Client("acme", worker, "k-" + worker, EgressPolicy.parse(egress), null));
  }

  @Test
  void aListFromTheOperatorsPolicyFileNamesTheFileAndTheEntryToChange() throws Exception {
    String t =
        proxy.admit(
            new EgressProxy.Client(
                "acme",
                "fetch_rates",
                "k-file",
                EgressPolicy.parse("api.allowed.test"),
                "/etc/kiln/egress.toml"));
    int before = denials.size();
    List<String> out = curl(t, "http://evil.test:" + http.getAddress().getPort() + "/hello");
    assertThat(out.get(1))
        .as(out.toString())
        .contains("403")
        .contains("is not in the egress allow-list of UDF fetch_rates")
        .contains(
            "add \"evil.test\" to the entry \"acme.fetch_rates\" of the egress policy file"
                + " /etc/kiln/egress.toml");
    assertThat(denials.subList(before, denials.size()))
        .singleElement()
        .satisfies(d -> assertThat(d.client().udf()).isEqualTo("k-file"));
  }

  @Test
  void aProxyWithTheSharedKeyTakesSignedCredentialsItNeverAdmitted() throws Exception {
    byte[] secret = "the replicas' shared secret 1234".getBytes(StandardCharsets.UTF_8);
    EgressCredentials signer = EgressCredentials.fromSharedSecret(secret);
    try (EgressProxy deployment =
        EgressProxy.start(
            new InetSocketAddress("127.0.0.1", 0),
            DenyList.parse(List.of("169.254.0.0/16")),
            table,
            d -> {},
            a -> true,
            EgressCredentials.fromSharedSecret(secret))) {
      String token =
          signer.issue(
              new EgressProxy.Client(
                  "acme", "pod", "k-pod", EgressPolicy.parse("api.allowed.test"), null));
      String url = "http://api.allowed.test:" + http.getAddress().getPort() + "/hello";
      List<String> ok = curlVia(deployment.url("127.0.0.1", token), url);
      assertThat(ok.get(1)).as(ok.toString()).endsWith("hello over http");
      String other =
          EgressCredentials.fromSharedSecret("another replica set's secret 123".getBytes())
              .issue(
                  new EgressProxy.Client(
                      "acme", "pod", "k-pod", EgressPolicy.parse("api.allowed.test"), null));
      assertThat(curlVia(deployment.url("127.0.0.1", other), url).get(1)).contains("407");
    }
  }

  @Test
  void connectionsToALocalAddressItDoesNotServeAreClosedUnanswered() throws Exception {
    try (EgressProxy onlySandboxes =
        EgressProxy.start(
            new InetSocketAddress("127.0.0.1", 0),
            DenyList.defaults(),
            EgressProxy.Resolver.SYSTEM,
            d -> {},
            a -> a.getHostAddress().startsWith("10.231."),
            null)) {
      try (Socket s = new Socket("127.0.0.1", onlySandboxes.port())) {
        s.setSoTimeout(10_000);
        s.getOutputStream().write("GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\n\r\n".getBytes());
        assertThat(s.getInputStream().read()).as("closed without an answer").isEqualTo(-1);
      }
    }
  }

  @Test
  void allowedNamesGetThroughOverHttpAndHttps() throws Exception {
    String t = token("fetcher", "api.allowed.test,*.wild.test");
    List<String> plain =
        curl(t, "http://api.allowed.test:" + http.getAddress().getPort() + "/hello");
    assertThat(plain.get(1)).as(plain.toString()).contains("200").endsWith("hello over http");
    List<String> tls =
        curl(t, "https://api.allowed.test:" + https.getAddress().getPort() + "/hello");
    assertThat(tls.get(1)).as(tls.toString()).endsWith("hello over https");
    List<String> wild = curl(t, "http://a.b.wild.test:" + http.getAddress().getPort() + "/hello");
    assertThat(wild.get(1)).as(wild.toString()).endsWith("hello over http");
    EgressProxy.Traffic traffic = proxy.traffic("acme", "fetcher");
    assertThat(traffic.sent()).isPositive();
    assertThat(traffic.received()).isGreaterThan("hello over https".length());
  }

  @Test
  void aDeniedHostFailsAtOnceNamingTheHostAndTheOption() throws Exception {
    String t = token("picky", "api.allowed.test,*.wild.test");
    int before = denials.size();
    long t0 = System.nanoTime();
    List<String> plain = curl(t, "http://evil.test:" + http.getAddress().getPort() + "/hello");
    assertThat(plain.get(1))
        .as(plain.toString())
        .contains("403")
        .contains("evil.test:" + http.getAddress().getPort() + " is not in the egress allow-list")
        .contains("ALTER WORKER picky SET egress = 'api.allowed.test,*.wild.test,evil.test'");
    List<String> tls = curl(t, "https://evil.test:" + https.getAddress().getPort() + "/hello");
    assertThat(tls.get(0)).as(tls.toString()).isNotEqualTo("0");
    assertThat(tls.get(1)).contains("403");
    // The domain of a wildcard is not under it.
    assertThat(curl(t, "http://wild.test:" + http.getAddress().getPort() + "/hello").get(1))
        .contains("403");
    // A raw address is a host like any other: not in the list, refused.
    assertThat(curl(t, "http://127.0.0.1:" + http.getAddress().getPort() + "/hello").get(1))
        .contains("403");
    assertThat(denials.subList(before, denials.size()))
        .extracting(EgressProxy.Denial::host)
        .containsExactly("evil.test", "evil.test", "wild.test", "127.0.0.1");
    System.out.printf(
        "egress: a denied request -> its denial reported in %.2f ms%n",
        (deniedAt.get(before) - t0) / 1e6);
  }

  @Test
  void anAllowedNameThatResolvesToADeniedAddressIsRefused() throws Exception {
    String t = token("meta", "*.allowed.test");
    List<String> out =
        curl(t, "http://meta.allowed.test:" + http.getAddress().getPort() + "/hello");
    assertThat(out.get(1))
        .as(out.toString())
        .contains("403")
        .contains("meta.allowed.test resolves to 127.0.0.2 (in 127.0.0.2)")
        .contains("--egress-deny");
    // An address allowed by the list is still checked against the deny list.
    String raw = token("raw", "127.0.0.1:" + http.getAddress().getPort());
    assertThat(curl(raw, "http://127.0.0.1:" + http.getAddress().getPort() + "/hello").get(1))
        .endsWith("hello over http");
  }

  @Test
  void unknownCredentialsAreRefusedAndRevokedOnesToo() throws Exception {
    assertThat(
            curl("not-a-token", "http://api.allowed.test:" + http.getAddress().getPort() + "/hello")
                .get(1))
        .contains("407");
    String t = token("gone", "api.allowed.test");
    proxy.revoke(t);
    assertThat(curl(t, "http://api.allowed.test:" + http.getAddress().getPort() + "/hello").get(1))
        .contains("407");
  }

  @Test
  void aPlainRequestForAnAllowedNameCannotCarryAHostHeaderForAnother() throws Exception {
    String t = token("fronting-http", "api.allowed.test");
    int before = denials.size();
    int port = http.getAddress().getPort();
    try (Socket s = new Socket("127.0.0.1", proxy.port())) {
      s.setSoTimeout(10_000);
      send(
          s,
          t,
          "GET http://api.allowed.test:" + port + "/hello HTTP/1.1",
          "Host: evil.test:" + port);
      String answer = new String(s.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      assertThat(answer).startsWith("HTTP/1.1 403").doesNotContain("hello over http");
    }
    assertThat(denials.subList(before, denials.size()))
        .singleElement()
        .satisfies(d -> assertThat(d.reason()).contains("Host header names evil.test"));
    // The same Host as the URL (with its port, or an upper-case spelling) goes through.
    List<String> ok = curl(t, "http://API.allowed.test:" + port + "/hello");
    assertThat(ok.get(1)).as(ok.toString()).endsWith("hello over http");
  }

  @Test
  void aTunnelToAnAllowedNameCannotCarryAHandshakeForAnother() throws Exception {
    String t = token("fronting", "api.allowed.test");
    int before = denials.size();
    int port = https.getAddress().getPort();
    try (Socket s = new Socket("127.0.0.1", proxy.port())) {
      send(
          s, t, "CONNECT api.allowed.test:" + port + " HTTP/1.1", "Host: api.allowed.test:" + port);
      byte[] head = new byte[39];
      assertThat(s.getInputStream().readNBytes(head, 0, head.length)).isEqualTo(head.length);
      assertThat(new String(head, StandardCharsets.US_ASCII)).startsWith("HTTP/1.1 200");
      SSLContext trustAll = SSLContext.getInstance("TLS");
      trustAll.init(null, new TrustManager[] {new TrustAll()}, null);
      SSLSocket tls =
          (SSLSocket) trustAll.getSocketFactory().createSocket(s, "evil.test", port, false);
      SSLParameters p = tls.getSSLParameters();
      p.setServerNames(List.of(new SNIHostName("evil.test")));
      tls.setSSLParameters(p);
      tls.setSoTimeout(10_000);
      boolean handshook;
      try {
        tls.startHandshake();
        handshook = true;
      } catch (java.io.IOException e) {
        handshook = false;
      }
      assertThat(handshook).as("the handshake for another name is cut").isFalse();
    }
    assertThat(denials.subList(before, denials.size()))
        .singleElement()
        .satisfies(d -> assertThat(d.reason()).contains("the TLS handshake names evil.test"));
  }

  /** Trusts any certificate (the test's own server's). */
  private static final class TrustAll implements X509TrustManager {
    @Override
    public void checkClientTrusted(java.security.cert.X509Certificate[] c, String a) {}

    @Override
    public void checkServerTrusted(java.security.cert.X509Certificate[] c, String a) {}

    @Override
    public java.security.cert.X509Certificate[] getAcceptedIssuers() {
      return new java.security.cert.X509Certificate[0];
    }
  }
}
