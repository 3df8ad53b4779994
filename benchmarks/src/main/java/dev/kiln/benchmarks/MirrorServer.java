package dev.kiln.benchmarks;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/** The mirror directory over HTTP on loopback (PEP 503 pages link to ../../files/...). */
final class MirrorServer {
  private final HttpServer server;
  private final ExecutorService executor;

  private MirrorServer(HttpServer server, ExecutorService executor) {
    this.server = server;
    this.executor = executor;
  }

  static MirrorServer start(Path root) throws IOException {
    Path dir = root.toRealPath();
    HttpServer server =
        HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 64);
    ExecutorService executor = Executors.newFixedThreadPool(8);
    server.setExecutor(executor);
    server.createContext("/", exchange -> serve(dir, exchange));
    server.start();
    return new MirrorServer(server, executor);
  }

  URI uri(String path) {
    return URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/" + path);
  }

  void stop() {
    server.stop(0);
    executor.shutdownNow();
  }

  private static void serve(Path root, HttpExchange exchange) throws IOException {
    try (exchange) {
      String path = exchange.getRequestURI().getPath();
      Path file = root.resolve(path.substring(1)).normalize();
      if (Files.isDirectory(file)) {
        file = file.resolve("index.html");
      }
      if (!file.startsWith(root) || !Files.isRegularFile(file)) {
        exchange.sendResponseHeaders(404, -1);
        return;
      }
      boolean html = file.getFileName().toString().endsWith(".html");
      exchange
          .getResponseHeaders()
          .set("Content-Type", html ? "text/html; charset=utf-8" : "application/octet-stream");
      boolean head = exchange.getRequestMethod().equals("HEAD");
      exchange.sendResponseHeaders(200, head ? -1 : Files.size(file));
      if (!head) {
        try (OutputStream out = exchange.getResponseBody()) {
          Files.copy(file, out);
        }
      }
    }
  }
}
