package dev.kiln.benchmarks;

import com.sun.net.httpserver.HttpsConfigurator;
import com.sun.net.httpserver.HttpsServer;
import dev.kiln.egress.DenyList;
import dev.kiln.egress.EgressPolicy;
import dev.kiln.egress.EgressProxy;
import dev.kiln.egress.TestTls;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * What the egress proxy costs a UDF, with curl as the client in both columns: a small HTTPS GET on
 * a new connection through the proxy (CONNECT, the SNI check, the tunnel) against the same GET
 * straight to the server, and a 100 MiB HTTPS download each way. The server is a JDK HTTPS server
 * on loopback (the machine has no other network); the proxy resolves its name from a table, as DNS
 * would. curl's own {@code time_total} is the figure, so its process start is left out; runs
 * alternate between the two ways. Then the same from a UDF ({@link SandboxEgress}): Python's urllib
 * in a gVisor sandbox, through Kiln's proxy, against the same Python on the host.
 *
 * <p>Run: {@code bin/bench egress [small GETs per way, default 40] [downloads per way, default 3]}.
 */
public final class EgressBenchmark {
  private static final long BIG = 100L << 20;

  private EgressBenchmark() {}

  public static void main(String[] args) throws Exception {
    int gets = args.length > 0 ? Integer.parseInt(args[0]) : 40;
    int downloads = args.length > 1 ? Integer.parseInt(args[1]) : 3;
    Path dir = Files.createTempDirectory("kiln-bench-egress-");
    HttpsServer https = HttpsServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    https.setHttpsConfigurator(new HttpsConfigurator(TestTls.selfSigned(dir, "api.bench.test")));
    https.createContext(
        "/small",
        ex -> {
          byte[] b = "ok".getBytes(StandardCharsets.US_ASCII);
          ex.sendResponseHeaders(200, b.length);
          try (OutputStream o = ex.getResponseBody()) {
            o.write(b);
          }
        });
    https.createContext(
        "/big",
        ex -> {
          ex.sendResponseHeaders(200, BIG);
          byte[] chunk = new byte[1 << 20];
          try (OutputStream o = ex.getResponseBody()) {
            for (long sent = 0; sent < BIG; sent += chunk.length) {
              o.write(chunk);
            }
          }
        });
    https.start();
    EgressProxy.Resolver table =
        host -> {
          if (host.equals("api.bench.test")) {
            return List.of(InetAddress.getByName("127.0.0.1"));
          }
          throw new UnknownHostException(host);
        };
    try (EgressProxy proxy =
        EgressProxy.start(
            new InetSocketAddress("127.0.0.1", 0),
            DenyList.parse(List.of("169.254.0.0/16")),
            table,
            d -> {})) {
      String token =
          proxy.admit(
              new EgressProxy.Client(
                  "bench", "fetch", "bench", EgressPolicy.parse("api.bench.test"), null));
      String proxyUrl = proxy.url("127.0.0.1", token);
      int port = https.getAddress().getPort();
      String direct = "https://127.0.0.1:" + port;
      String named = "https://api.bench.test:" + port;
      List<Double> smallDirect = new ArrayList<>();
      List<Double> smallProxy = new ArrayList<>();
      for (int i = 0; i < gets + 3; i++) {
        double d = curl(null, direct + "/small", "%{time_total}") * 1000;
        double p = curl(proxyUrl, named + "/small", "%{time_total}") * 1000;
        if (i >= 3) { // the first few warm the JVM's TLS
          smallDirect.add(d);
          smallProxy.add(p);
        }
      }
      List<Double> bigDirect = new ArrayList<>();
      List<Double> bigProxy = new ArrayList<>();
      for (int i = 0; i < downloads; i++) {
        bigDirect.add(curl(null, direct + "/big", "%{speed_download}") / (1 << 20));
        bigProxy.add(curl(proxyUrl, named + "/big", "%{speed_download}") / (1 << 20));
      }
      EgressProxy.Traffic t = proxy.traffic("bench", "fetch");
      System.out.printf(
          "small HTTPS GET, a new connection each (%d each way), curl time_total:%n"
              + "  direct        p50 %.2f ms  p90 %.2f ms%n"
              + "  through proxy p50 %.2f ms  p90 %.2f ms  (+%.2f ms at p50)%n",
          gets,
          pct(smallDirect, 50),
          pct(smallDirect, 90),
          pct(smallProxy, 50),
          pct(smallProxy, 90),
          pct(smallProxy, 50) - pct(smallDirect, 50));
      System.out.printf(
          "100 MiB HTTPS download (%d each way): direct %s MiB/s, through proxy %s MiB/s;"
              + " median %.0f against %.0f MiB/s%n",
          downloads, fmt(bigDirect), fmt(bigProxy), pct(bigDirect, 50), pct(bigProxy, 50));
      System.out.printf(
          "proxy counted for the worker: %,d bytes sent, %,d received%n", t.sent(), t.received());
      SandboxEgress.measure(port, gets, downloads);
    } finally {
      https.stop(0);
    }
  }

  /** curl's {@code -w} figure for one transfer, through {@code proxy} when given. */
  private static double curl(String proxy, String url, String what) throws Exception {
    List<String> argv =
        new ArrayList<>(List.of("curl", "-sS", "-k", "-o", "/dev/null", "-w", what));
    if (proxy != null) {
      argv.addAll(List.of("--proxy", proxy));
    }
    argv.add(url);
    Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    if (!p.waitFor(120, TimeUnit.SECONDS) || p.exitValue() != 0) {
      throw new IllegalStateException("curl " + url + " failed: " + out);
    }
    return Double.parseDouble(out);
  }

  static double pct(List<Double> values, int p) {
    List<Double> s = new ArrayList<>(values);
    s.sort(null);
    int i = (int) Math.ceil(p / 100.0 * s.size()) - 1;
    return s.get(Math.max(0, Math.min(i, s.size() - 1)));
  }

  static String fmt(List<Double> values) {
    return String.join(" / ", values.stream().map(v -> String.format("%.0f", v)).toList());
  }
}
