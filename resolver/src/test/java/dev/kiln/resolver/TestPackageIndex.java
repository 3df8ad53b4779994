package dev.kiln.resolver;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
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
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * A real package index over HTTP (JDK {@code HttpServer} on a free port) serving files the test
 * adds: PEP 503 HTML or PEP 691 JSON by content negotiation, PEP 658 metadata files, yanked files,
 * {@code Requires-Python}, optional basic auth, and on request a file whose bytes do not match the
 * hash the page lists. It records every request path, so tests can tell what went over the wire.
 */
public final class TestPackageIndex implements AutoCloseable {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** One file on the index. */
  private record Entry(
      String project, String filename, byte[] bytes, String requiresPython, byte[] metadata) {}

  private final HttpServer server;
  private final ExecutorService executor;
  private final Map<String, Entry> files = new ConcurrentHashMap<>();
  private final Set<String> yanked = ConcurrentHashMap.newKeySet();
  private final Set<String> corrupt = ConcurrentHashMap.newKeySet();
  private final List<String> requests = new CopyOnWriteArrayList<>();
  private final List<String> accepts = new CopyOnWriteArrayList<>();
  private volatile boolean json = true;
  private volatile boolean pep658 = true;
  private volatile String authorization;

  private TestPackageIndex() throws IOException {
    server = HttpServer.create(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0), 0);
    executor = Executors.newFixedThreadPool(4);
    server.setExecutor(executor);
    server.createContext("/", this::handle);
    server.start();
  }

  public static TestPackageIndex start() throws IOException {
    return new TestPackageIndex();
  }

  /** Adds a wheel (with its metadata for PEP 658 and its Requires-Python for the page). */
  public TestPackageIndex add(WheelBuilder w) {
    files.put(
        w.filename(),
        new Entry(
            Requirement.normalizeName(w.name()),
            w.filename(),
            w.bytes(),
            w.declaredRequiresPython(),
            w.metadata().getBytes(StandardCharsets.UTF_8)));
    return this;
  }

  /** Adds any other file of a project, e.g. an sdist. */
  public TestPackageIndex addFile(String project, String filename, byte[] bytes) {
    files.put(filename, new Entry(Requirement.normalizeName(project), filename, bytes, null, null));
    return this;
  }

  /** Serve PEP 691 JSON to clients that ask for it (default) or always PEP 503 HTML. */
  public TestPackageIndex json(boolean on) {
    json = on;
    return this;
  }

  /** Offer PEP 658 metadata files (default) or not. */
  public TestPackageIndex pep658(boolean on) {
    pep658 = on;
    return this;
  }

  public TestPackageIndex yank(String filename) {
    yanked.add(filename);
    return this;
  }

  /** Serve other bytes for this file than the sha256 its page lists. */
  public TestPackageIndex corrupt(String filename) {
    corrupt.add(filename);
    return this;
  }

  /** Answer 401 unless requests carry these basic-auth credentials. */
  public TestPackageIndex requireBasicAuth(String user, String password) {
    authorization =
        "Basic "
            + Base64.getEncoder()
                .encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
    return this;
  }

  /** The simple API root, {@code http://127.0.0.1:PORT/simple/}. */
  public URI url() {
    return URI.create("http://127.0.0.1:" + server.getAddress().getPort() + "/simple/");
  }

  public int port() {
    return server.getAddress().getPort();
  }

  /** Every request path so far, in order. */
  public List<String> requests() {
    return List.copyOf(requests);
  }

  /** The Accept header of every request so far. */
  public List<String> accepts() {
    return List.copyOf(accepts);
  }

  public void clearRequests() {
    requests.clear();
    accepts.clear();
  }

  /** The sha256 of a file as the page lists it. */
  public String sha256(String filename) {
    return hex(files.get(filename).bytes());
  }

  /**
   * Writes the same index as a PEP 503 directory tree ({@code simple/<project>/index.html} linking
   * to {@code files/}) for file:// tests, and returns the {@code simple} directory.
   */
  public Path writeTree(Path dir) throws IOException {
    Path simple = Files.createDirectories(dir.resolve("simple"));
    Path filesDir = Files.createDirectories(dir.resolve("files"));
    for (Entry e : files.values()) {
      Files.write(filesDir.resolve(e.filename()), e.bytes());
      if (e.metadata() != null && pep658) {
        Files.write(filesDir.resolve(e.filename() + ".metadata"), e.metadata());
      }
    }
    for (String project : projects()) {
      Path p = Files.createDirectories(simple.resolve(project));
      Files.writeString(p.resolve("index.html"), html(project));
    }
    return simple;
  }

  private List<String> projects() {
    return files.values().stream().map(Entry::project).distinct().sorted().toList();
  }

  private void handle(HttpExchange ex) throws IOException {
    try (ex) {
      String path = ex.getRequestURI().getPath();
      requests.add(path);
      accepts.add(String.valueOf(ex.getRequestHeaders().getFirst("Accept")));
      if (authorization != null
          && !authorization.equals(ex.getRequestHeaders().getFirst("Authorization"))) {
        ex.getResponseHeaders().add("WWW-Authenticate", "Basic realm=\"test\"");
        send(ex, 401, "text/plain", "unauthorized".getBytes(StandardCharsets.UTF_8));
        return;
      }
      if (path.startsWith("/simple/")) {
        String project = path.substring("/simple/".length());
        if (!project.endsWith("/")) {
          ex.getResponseHeaders().add("Location", path + "/");
          send(ex, 301, "text/plain", new byte[0]);
          return;
        }
        project = project.substring(0, project.length() - 1);
        if (!projects().contains(project)) {
          send(ex, 404, "text/plain", "no such project".getBytes(StandardCharsets.UTF_8));
          return;
        }
        String accept = String.valueOf(ex.getRequestHeaders().getFirst("Accept"));
        if (json && accept.contains("application/vnd.pypi.simple.v1+json")) {
          send(
              ex,
              200,
              "application/vnd.pypi.simple.v1+json",
              jsonPage(project).getBytes(StandardCharsets.UTF_8));
        } else {
          send(ex, 200, "text/html; charset=utf-8", html(project).getBytes(StandardCharsets.UTF_8));
        }
        return;
      }
      if (path.startsWith("/files/")) {
        String name = path.substring("/files/".length());
        if (name.endsWith(".metadata") && pep658) {
          Entry e = files.get(name.substring(0, name.length() - ".metadata".length()));
          if (e != null && e.metadata() != null) {
            send(ex, 200, "application/octet-stream", e.metadata());
            return;
          }
        }
        Entry e = files.get(name);
        if (e != null) {
          byte[] body = e.bytes();
          if (corrupt.contains(name)) {
            body = body.clone();
            body[body.length / 2] ^= 0x5a;
          }
          send(ex, 200, "application/octet-stream", body);
          return;
        }
      }
      send(ex, 404, "text/plain", "not found".getBytes(StandardCharsets.UTF_8));
    }
  }

  private String html(String project) {
    StringBuilder sb =
        new StringBuilder("<!DOCTYPE html>\n<html><head><title>Links for ")
            .append(project)
            .append("</title></head><body>\n");
    for (Entry e : sortedFiles(project)) {
      sb.append("<a href=\"../../files/")
          .append(e.filename())
          .append("#sha256=")
          .append(hex(e.bytes()))
          .append('"');
      if (e.requiresPython() != null) {
        sb.append(" data-requires-python=\"")
            .append(e.requiresPython().replace(">", "&gt;").replace("<", "&lt;"))
            .append('"');
      }
      if (yanked.contains(e.filename())) {
        sb.append(" data-yanked=\"test\"");
      }
      if (pep658 && e.metadata() != null) {
        sb.append(" data-core-metadata=\"sha256=").append(hex(e.metadata())).append('"');
        sb.append(" data-dist-info-metadata=\"sha256=").append(hex(e.metadata())).append('"');
      }
      sb.append('>').append(e.filename()).append("</a><br/>\n");
    }
    return sb.append("</body></html>\n").toString();
  }

  private String jsonPage(String project) {
    ObjectNode root = JSON.createObjectNode();
    root.putObject("meta").put("api-version", "1.1");
    root.put("name", project);
    ArrayNode arr = root.putArray("files");
    for (Entry e : sortedFiles(project)) {
      ObjectNode f = arr.addObject();
      f.put("filename", e.filename());
      f.put("url", "../../files/" + e.filename());
      f.putObject("hashes").put("sha256", hex(e.bytes()));
      if (e.requiresPython() != null) {
        f.put("requires-python", e.requiresPython());
      } else {
        f.putNull("requires-python");
      }
      if (yanked.contains(e.filename())) {
        f.put("yanked", "test");
      } else {
        f.put("yanked", false);
      }
      if (pep658 && e.metadata() != null) {
        f.putObject("core-metadata").put("sha256", hex(e.metadata()));
      } else {
        f.put("core-metadata", false);
      }
    }
    return root.toString();
  }

  private List<Entry> sortedFiles(String project) {
    Map<String, Entry> sorted = new TreeMap<>();
    for (Entry e : files.values()) {
      if (e.project().equals(project)) {
        sorted.put(e.filename(), e);
      }
    }
    return new ArrayList<>(sorted.values());
  }

  private static void send(HttpExchange ex, int status, String type, byte[] body)
      throws IOException {
    ex.getResponseHeaders().add("Content-Type", type);
    ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
    if (body.length > 0) {
      try (OutputStream out = ex.getResponseBody()) {
        out.write(body);
      }
    }
  }

  static String hex(byte[] data) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Stops the server at once; later requests fail to connect. */
  @Override
  public void close() {
    server.stop(0);
    executor.shutdownNow();
  }
}
