package dev.kiln.controlplane;

import com.sun.net.httpserver.HttpServer;
import dev.kiln.base.KilnException;
import dev.kiln.egress.DenyList;
import dev.kiln.egress.EgressCredentials;
import dev.kiln.egress.EgressProxy;
import dev.kiln.egress.HostsFile;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code kiln egress}: the egress proxy alone, as a Deployment of its own for sandboxes that are
 * pods. It accepts the credentials Kiln's replicas sign with the secret they share (mounted from
 * the Secret {@code kiln-token-secret}) and keeps no state of its own, so any number of replicas of
 * it serve any pod.
 */
@Command(
    name = "egress",
    header = "Runs the egress proxy alone, for UDF sandboxes that are pods.",
    footer = {
      "%nExamples:",
      "  kiln egress --secret-file /var/run/kiln/token-secret",
      "  kiln egress --secret-file s --egress-deny 169.254.0.0/16,10.0.0.0/8",
      "%nExit status:",
      "  0  stopped",
      "  1  it could not start (the port, the files)",
      "  2  bad usage"
    },
    mixinStandardHelpOptions = true,
    description = {
      "Lets UDF sandboxes reach the hosts their worker's egress allow-list names and nothing",
      "else: HTTP by host, HTTPS by CONNECT and the TLS handshake's server name (never",
      "decrypted), every address checked against the deny list. Each refusal is logged."
    })
final class EgressCommand implements Callable<Integer> {

  @Option(names = "--port", paramLabel = "PORT", description = "Port to listen on (default 3128).")
  int port = 3128;

  @Option(
      names = "--bind-host",
      paramLabel = "HOST",
      description = "Address to listen on (default 0.0.0.0).")
  String bindHost = "0.0.0.0";

  @Option(
      names = "--secret-file",
      paramLabel = "FILE",
      required = true,
      description =
          "The secret Kiln's replicas share (the Secret kiln-token-secret, key token-secret):"
              + " credentials signed with it are accepted.")
  Path secretFile;

  @Mixin EgressOptions egress = new EgressOptions();

  @Option(
      names = "--metrics-port",
      paramLabel = "PORT",
      description =
          "Port of /metrics (bytes per worker, kiln_egress_bytes_total) and /healthz"
              + " (default 9091; -1: none).")
  int metricsPort = 9091;

  @Override
  public Integer call() throws Exception {
    DenyList denyList;
    byte[] secret;
    EgressProxy.Resolver resolver;
    try {
      denyList = DenyList.parse(DenyList.cidrs(egress.deny));
      secret = Files.readAllBytes(secretFile);
      resolver = HostsFile.resolver(egress.hosts == null ? null : Path.of(egress.hosts));
    } catch (KilnException | IOException e) {
      System.err.println("kiln egress: " + e.getMessage());
      return 2;
    }
    EgressCredentials credentials;
    try {
      credentials = EgressCredentials.fromSharedSecret(secret);
    } catch (IllegalArgumentException e) {
      System.err.println("kiln egress: " + secretFile + ": " + e.getMessage());
      return 2;
    }
    EgressProxy proxy;
    try {
      proxy =
          EgressProxy.start(
              new InetSocketAddress(bindHost, port),
              denyList,
              resolver,
              d -> {},
              a -> true,
              credentials);
    } catch (IOException e) {
      System.err.println(
          "kiln egress: cannot listen on " + bindHost + ":" + port + ": " + e.getMessage());
      return 1;
    }
    HttpServer metrics = null;
    if (metricsPort >= 0) {
      try {
        metrics = metrics(proxy);
      } catch (IOException e) {
        proxy.close();
        System.err.println(
            "kiln egress: cannot serve metrics on " + bindHost + ":" + metricsPort + ": " + e);
        return 1;
      }
    }
    HttpServer served = metrics;
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  if (served != null) {
                    served.stop(0);
                  }
                  proxy.close();
                  stopped.countDown();
                },
                "kiln-egress-shutdown"));
    System.out.println(
        "kiln egress proxy ready on "
            + bindHost
            + ":"
            + proxy.port()
            + " (deny "
            + denyList.ranges()
            + ")"
            + (served == null ? "" : "; metrics on port " + served.getAddress().getPort()));
    System.out.flush();
    stopped.await();
    return 0;
  }

  /** {@code /metrics} (the bytes of every worker seen so far) and {@code /healthz}. */
  private HttpServer metrics(EgressProxy proxy) throws IOException {
    PrometheusMeterRegistry meters = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    HttpServer http = HttpServer.create(new InetSocketAddress(bindHost, metricsPort), 16);
    http.createContext(
        "/metrics",
        ex -> {
          EgressMetrics.countAll(meters, proxy);
          UdfAdmin.respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", meters.scrape());
        });
    http.createContext("/healthz", ex -> UdfAdmin.respond(ex, 200, "text/plain", "ok\n"));
    http.start();
    return http;
  }
}
