package dev.kiln.controlplane;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import dev.kiln.cache.ArtifactCache;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.Executors;
import java.util.function.BooleanSupplier;

/**
 * The admin HTTP port: {@code /healthz} for probes, {@code /metrics} for Prometheus, {@code
 * /cache/stats} for {@code kiln cache stats} (the cache's tiers and disk use by kind), and {@code
 * /udfs} and {@code /workers} (see {@link UdfAdmin}).
 */
final class AdminServer implements AutoCloseable {
  private static final com.fasterxml.jackson.databind.ObjectMapper JSON =
      new com.fasterxml.jackson.databind.ObjectMapper();
  private final HttpServer server;

  AdminServer(
      String host,
      int port,
      PrometheusMeterRegistry meters,
      BooleanSupplier healthy,
      UdfAdmin udfs,
      ArtifactCache cache,
      java.nio.file.Path dataDir,
      DiskCollector disk)
      throws IOException {
    server = HttpServer.create(new InetSocketAddress(host, port), 0);
    // A thread per exchange: a progress stream lasts as long as a UDF's provisioning, and must not
    // hold up /metrics or /healthz meanwhile.
    server.setExecutor(
        Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("kiln-admin-", 0).factory()));
    server.createContext(
        "/healthz",
        ex -> {
          boolean ok = healthy.getAsBoolean();
          respond(ex, ok ? 200 : 503, "text/plain", ok ? "ok\n" : "unhealthy\n");
        });
    server.createContext(
        "/metrics",
        ex -> respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", meters.scrape()));
    server.createContext("/udfs", udfs::handle);
    server.createContext("/workers", udfs::handleWorkers);
    server.createContext("/sandboxes", udfs::handleSandboxes);
    server.createContext(
        "/cache/stats",
        ex -> {
          com.fasterxml.jackson.databind.node.ObjectNode body = JSON.valueToTree(cache.stats());
          body.set("disk", JSON.valueToTree(DiskUsage.measure(dataDir)));
          respond(
              ex,
              200,
              "application/json",
              JSON.writerWithDefaultPrettyPrinter().writeValueAsString(body) + "\n");
        });
    server.createContext(
        "/cache/gc",
        ex -> {
          if (!ex.getRequestMethod().equals("POST")) {
            respond(ex, 405, "text/plain", "POST /cache/gc (?dry_run=true to only count)\n");
            return;
          }
          String q = ex.getRequestURI().getRawQuery();
          boolean dry = q != null && q.contains("dry_run=true");
          respond(
              ex,
              200,
              "application/json",
              JSON.writerWithDefaultPrettyPrinter().writeValueAsString(disk.collect(dry)) + "\n");
        });
    server.createContext(
        "/",
        ex ->
            respond(
                ex,
                404,
                "text/plain",
                "not found; try /healthz, /metrics, /udfs, /sandboxes or /workers\n"));
    server.start();
  }

  int port() {
    return server.getAddress().getPort();
  }

  private static void respond(HttpExchange ex, int status, String type, String body)
      throws IOException {
    UdfAdmin.respond(ex, status, type, body);
  }

  @Override
  public void close() {
    server.stop(0);
  }
}
