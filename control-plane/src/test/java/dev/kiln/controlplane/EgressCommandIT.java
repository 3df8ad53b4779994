package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.net.httpserver.HttpServer;
import dev.kiln.egress.EgressCredentials;
import dev.kiln.egress.EgressPolicy;
import dev.kiln.egress.EgressProxy;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code kiln egress} as its own process, as the egress Deployment runs it: credentials signed with
 * the shared secret get through to allowed hosts, others are refused, and bad usage exits 2.
 */
class EgressCommandIT {
  @TempDir Path dir;

  private static List<String> kiln(String... args) {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(Kiln.class.getName());
    cmd.addAll(List.of(args));
    return cmd;
  }

  private static List<String> curl(String proxy, String url) throws Exception {
    Process p =
        new ProcessBuilder("curl", "-sS", "-i", "--max-time", "20", "--proxy", proxy, url)
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    return List.of(Integer.toString(p.exitValue()), out);
  }

  @Test
  void signedCredentialsGetThroughToTheirHostsAndNoFurther() throws Exception {
    byte[] secret = "the secret Kiln's replicas share".getBytes(StandardCharsets.UTF_8);
    Path secretFile = Files.write(dir.resolve("token-secret"), secret);
    Path hosts = Files.writeString(dir.resolve("hosts"), "127.0.0.1 api.allowed.test evil.test\n");
    HttpServer site = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    site.createContext(
        "/hello",
        ex -> {
          byte[] b = "hello".getBytes(StandardCharsets.UTF_8);
          ex.sendResponseHeaders(200, b.length);
          try (OutputStream o = ex.getResponseBody()) {
            o.write(b);
          }
        });
    site.start();
    Process proxy =
        new ProcessBuilder(
                kiln(
                    "egress",
                    "--port",
                    "0",
                    "--bind-host",
                    "127.0.0.1",
                    "--secret-file",
                    secretFile.toString(),
                    "--egress-deny",
                    "169.254.0.0/16",
                    "--egress-hosts",
                    hosts.toString(),
                    "--metrics-port",
                    "0"))
            .redirectErrorStream(true)
            .start();
    try {
      BufferedReader out =
          new BufferedReader(new InputStreamReader(proxy.getInputStream(), StandardCharsets.UTF_8));
      Pattern ready =
          Pattern.compile(
              "kiln egress proxy ready on 127\\.0\\.0\\.1:(\\d+) .*metrics on port (\\d+)");
      int port = -1;
      int metricsPort = -1;
      List<String> seen = new ArrayList<>();
      for (String line = out.readLine(); line != null; line = out.readLine()) {
        seen.add(line);
        Matcher m = ready.matcher(line);
        if (m.find()) {
          port = Integer.parseInt(m.group(1));
          metricsPort = Integer.parseInt(m.group(2));
          break;
        }
      }
      assertThat(port).as(String.join("\n", seen)).isPositive();
      Thread.ofVirtual()
          .start(
              () -> {
                try {
                  out.transferTo(java.io.Writer.nullWriter());
                } catch (java.io.IOException e) {
                  // ended
                }
              });
      String credential =
          EgressCredentials.fromSharedSecret(secret)
              .issue(
                  new EgressProxy.Client(
                      "acme", "fetcher", "k", EgressPolicy.parse("api.allowed.test"), null));
      String via = EgressProxy.proxyUrl("127.0.0.1:" + port, credential);
      int sitePort = site.getAddress().getPort();
      assertThat(curl(via, "http://api.allowed.test:" + sitePort + "/hello").get(1))
          .endsWith("hello");
      String metrics =
          java.net.http.HttpClient.newHttpClient()
              .send(
                  java.net.http.HttpRequest.newBuilder(
                          java.net.URI.create("http://127.0.0.1:" + metricsPort + "/metrics"))
                      .build(),
                  java.net.http.HttpResponse.BodyHandlers.ofString())
              .body();
      assertThat(metrics)
          .containsPattern(
              "kiln_egress_bytes_total\\{direction=\"received\",tenant=\"acme\",worker=\"fetcher\",?\\}"
                  + " [1-9]");
      assertThat(curl(via, "http://evil.test:" + sitePort + "/hello").get(1))
          .contains("403")
          .contains("ALTER WORKER fetcher SET egress = 'api.allowed.test,evil.test'");
      assertThat(
              curl(
                      "http://kiln:forged@127.0.0.1:" + port,
                      "http://api.allowed.test:" + sitePort + "/hello")
                  .get(1))
          .contains("407");
    } finally {
      proxy.destroy();
      assertThat(proxy.waitFor(30, TimeUnit.SECONDS)).as("stops on SIGTERM").isTrue();
      site.stop(0);
    }
  }

  @Test
  void aMissingSecretFileOrABadDenyRangeIsBadUsage() throws Exception {
    Process p =
        new ProcessBuilder(kiln("egress", "--secret-file", dir.resolve("none").toString()))
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).isEqualTo(2);
    assertThat(out).contains("kiln egress:").contains("none");
    Path secret = Files.write(dir.resolve("s"), new byte[32]);
    Process q =
        new ProcessBuilder(
                kiln("egress", "--secret-file", secret.toString(), "--egress-deny", "10.0.0.0/33"))
            .redirectErrorStream(true)
            .start();
    String out2 = new String(q.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(q.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(q.exitValue()).isEqualTo(2);
    assertThat(out2).contains("10.0.0.0/33");
  }
}
