package dev.kiln.resolver;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
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

/**
 * Serves file:// package indexes (PEP 503 directory trees, e.g. the local mirror pip is configured
 * with) over real HTTP: each index's parent directory under its own prefix, a directory answered by
 * its {@code index.html}, so relative links such as {@code ../../files/x.whl} keep working.
 */
public final class StaticIndexServer implements AutoCloseable {
  private final HttpServer server;
  private final ExecutorService executor;
  private final List<Path> roots = new ArrayList<>();
  private final List<URI> indexUrls = new ArrayList<>();

  /** Serves each {@code file://.../simple} index; {@link #indexUrls()} are their HTTP twins. */
  public StaticIndexServer(List<URI> fileIndexes) throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    executor = Executors.newFixedThreadPool(4);
    server.setExecutor(executor);
    for (URI u : fileIndexes) {
      Path simple = Path.of(u).toAbsolutePath().normalize();
      int n = roots.size();
      roots.add(simple.getParent());
      indexUrls.add(
          URI.create(
              "http://127.0.0.1:"
                  + server.getAddress().getPort()
                  + "/i"
                  + n
                  + "/"
                  + simple.getFileName()
                  + "/"));
    }
    server.createContext("/", this::handle);
    server.start();
  }

  /** The HTTP index URLs, in the order given. */
  public List<URI> indexUrls() {
    return List.copyOf(indexUrls);
  }

  private void handle(HttpExchange ex) throws IOException {
    try (ex) {
      String path = ex.getRequestURI().getPath();
      String[] parts = path.split("/", 3);
      Path file = null;
      if (parts.length == 3 && parts[1].matches("i\\d+")) {
        int n = Integer.parseInt(parts[1].substring(1));
        if (n < roots.size()) {
          Path root = roots.get(n);
          Path p = root.resolve(parts[2]).normalize();
          if (p.startsWith(root)) { // nothing outside the served tree
            file = Files.isDirectory(p) ? p.resolve("index.html") : p;
          }
        }
      }
      if (file == null || !Files.isRegularFile(file)) {
        byte[] body = "not found".getBytes(StandardCharsets.UTF_8);
        ex.sendResponseHeaders(404, body.length);
        try (OutputStream out = ex.getResponseBody()) {
          out.write(body);
        }
        return;
      }
      String type =
          file.getFileName().toString().endsWith(".html")
              ? "text/html; charset=utf-8"
              : "application/octet-stream";
      ex.getResponseHeaders().add("Content-Type", type);
      ex.sendResponseHeaders(200, Files.size(file));
      try (OutputStream out = ex.getResponseBody()) {
        Files.copy(file, out);
      }
    }
  }

  @Override
  public void close() {
    server.stop(0);
    executor.shutdownNow();
  }
}
