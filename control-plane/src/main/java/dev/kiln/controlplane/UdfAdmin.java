package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpExchange;
import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.worker.RunnerPool;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.function.Supplier;

/**
 * The admin port's view of UDF resources: {@code /udfs} lists them, {@code /udfs/<key>/logs} shows
 * what the UDF printed (bounded), {@code /udfs/<key>/health} answers {@code 1} when it can serve
 * and {@code /udfs/<key>/stats} counts its requests (databend-wire.md §5); {@code
 * /udfs/<key>/progress} streams where its provisioning is ({@code kiln prewarm --server}). A key
 * may be given by a unique prefix; {@code ?tenant=} narrows to one tenant.
 */
final class UdfAdmin {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** How long a progress stream lasts unless {@code ?timeout=} (seconds) says otherwise. */
  private static final Duration PROGRESS_TIMEOUT = Duration.ofMinutes(15);

  private final UdfRegistry registry;
  private final Workers workers;
  private final InstantSource clock;
  private final Supplier<List<WarmSandboxes.Ready>> ready;

  /**
   * @param ready the sandboxes started ahead of need and ready now, listed after the UDFs'
   */
  UdfAdmin(
      UdfRegistry registry,
      Workers workers,
      InstantSource clock,
      Supplier<List<WarmSandboxes.Ready>> ready) {
    this.registry = registry;
    this.workers = workers;
    this.clock = clock;
    this.ready = ready;
  }

  /**
   * {@code /workers/TENANT/NAME/health} ({@code 1} when the worker's UDF can serve) and {@code
   * /workers/TENANT/NAME/stats} (its {@code request_count}, {@code first_request_time}, {@code
   * last_request_time}, as Databend's server stub serves them).
   */
  void handleWorkers(HttpExchange ex) throws IOException {
    String[] parts = ex.getRequestURI().getPath().replaceAll("/+$", "").split("/");
    if (parts.length != 5) {
      respond(
          ex, 404, "text/plain", "try /workers/TENANT/NAME/health or /workers/TENANT/NAME/stats\n");
      return;
    }
    Tenant tenant;
    try {
      tenant = new Tenant(parts[2]);
    } catch (IllegalArgumentException e) {
      respond(ex, 404, "text/plain", "no such tenant\n");
      return;
    }
    Optional<Workers.Worker> worker = workers.get(tenant, parts[3]);
    if (worker.isEmpty()) {
      respond(ex, 404, "text/plain", "tenant " + tenant + " has no worker " + parts[3] + "\n");
      return;
    }
    List<UdfResource> matches =
        worker.get().key() == null
            ? List.of()
            : registry.get(tenant, new ContentKey(worker.get().key())).stream().toList();
    switch (parts[4]) {
      case "stats" -> respond(ex, 200, "application/json", stats(matches));
      case "health" -> {
        boolean ok = !matches.isEmpty() && matches.stream().allMatch(UdfAdmin::healthy);
        respond(ex, ok ? 200 : 503, "text/plain", ok ? "1\n" : "0\n");
      }
      default -> respond(ex, 404, "text/plain", "unknown page " + parts[4] + "\n");
    }
  }

  /**
   * {@code /sandboxes}: every UDF resource this server runs or is starting, with its tenant,
   * worker, key, state ({@link #state}), age, idle time, CPUs, memory limit and use, and calls;
   * then each sandbox started ahead of need and ready (no tenant or key; state {@code ready}). What
   * {@code kiln ps} prints.
   */
  void handleSandboxes(HttpExchange ex) throws IOException {
    ArrayNode arr = JSON.createArrayNode();
    Instant now = clock.instant();
    List<UdfResource> all = new ArrayList<>(registry.all());
    all.sort(
        java.util.Comparator.comparing((UdfResource r) -> r.tenant.name())
            .thenComparing(r -> r.created));
    for (UdfResource r : all) {
      ObjectNode n = arr.addObject();
      n.put("tenant", r.tenant.name());
      n.put("worker", r.owner);
      n.put("handler", r.definition.handler());
      n.put("key", r.key.hex());
      n.put("state", state(r));
      n.put("age_seconds", r.age().toSeconds());
      Optional<Instant> last = r.lastActivity();
      if (last.isPresent()) {
        n.put("idle_seconds", Duration.between(last.get(), now).toSeconds());
      } else {
        n.putNull("idle_seconds");
      }
      n.put("size", r.sizing.name());
      n.put("cpus", r.sizing.cpus());
      n.put("memory_limit_bytes", r.sizing.memoryBytes());
      OptionalLong used = r.sandbox().map(Sandbox::memoryBytes).orElse(OptionalLong.empty());
      if (used.isPresent()) {
        n.put("memory_bytes", used.getAsLong());
      } else {
        n.putNull("memory_bytes");
      }
      Optional<RunnerPool> pool = pool(r);
      RunnerPool.Stats st = pool.map(RunnerPool::stats).orElse(null);
      n.put("calls", st == null ? 0 : st.requestCount());
      n.put("rows", st == null ? 0 : st.rows());
      n.put("runners", st == null ? 0 : st.runners());
      n.put("live_runners", st == null ? 0 : st.liveRunners());
      n.put("sandbox", r.sandbox().map(Sandbox::id).orElse(null));
      n.put("sandboxes", r.sandboxCount());
    }
    // Started ahead of need: no tenant, key or calls yet, state "ready".
    for (WarmSandboxes.Ready w : ready.get()) {
      ObjectNode n = arr.addObject();
      n.putNull("tenant");
      n.putNull("worker");
      n.put("handler", w.what());
      n.putNull("key");
      n.put("state", "ready");
      n.putNull("age_seconds");
      n.putNull("idle_seconds");
      n.putNull("size");
      n.put("cpus", w.sandbox().spec().limits().cpus());
      n.put("memory_limit_bytes", w.sandbox().spec().limits().memoryBytes());
      OptionalLong used = w.sandbox().memoryBytes();
      if (used.isPresent()) {
        n.put("memory_bytes", used.getAsLong());
      } else {
        n.putNull("memory_bytes");
      }
      n.put("calls", 0);
      n.put("rows", 0);
      n.put("sandbox", w.sandbox().id());
      n.put("sandboxes", 1);
    }
    respond(
        ex,
        200,
        "application/json",
        JSON.writerWithDefaultPrettyPrinter().writeValueAsString(arr) + "\n");
  }

  void handle(HttpExchange ex) throws IOException {
    URI uri = ex.getRequestURI();
    String[] parts = uri.getPath().replaceAll("/+$", "").split("/");
    String tenant = query(uri, "tenant");
    if (parts.length == 2) {
      respond(ex, 200, "application/json", list(tenant));
      return;
    }
    if (parts.length != 4) {
      respond(
          ex,
          404,
          "text/plain",
          "try /udfs, /udfs/<key>/logs, /udfs/<key>/stats, /udfs/<key>/progress or /health\n");
      return;
    }
    List<UdfResource> matches = find(parts[2], tenant);
    if (matches.isEmpty()) {
      respond(ex, 404, "text/plain", "no UDF resource with key " + parts[2] + " on this server\n");
      return;
    }
    switch (parts[3]) {
      case "logs" -> respond(ex, 200, "text/plain; charset=utf-8", logs(matches));
      case "stats" -> respond(ex, 200, "application/json", stats(matches));
      case "health" -> {
        boolean ok = matches.stream().allMatch(UdfAdmin::healthy);
        respond(ex, ok ? 200 : 503, "text/plain", ok ? "1\n" : "0\n");
      }
      case "progress" -> {
        if (matches.size() > 1) {
          respond(ex, 400, "text/plain", "several tenants have that UDF; add ?tenant=TENANT\n");
          return;
        }
        String timeout = query(uri, "timeout");
        try {
          progress(
              ex,
              matches.get(0),
              timeout == null ? PROGRESS_TIMEOUT : Duration.ofSeconds(Long.parseLong(timeout)));
        } catch (NumberFormatException e) {
          respond(ex, 400, "text/plain", "timeout must be whole seconds, got " + timeout + "\n");
        }
      }
      default -> respond(ex, 404, "text/plain", "unknown page " + parts[3] + "\n");
    }
  }

  /**
   * Streams a resource's progress ({@link UdfProgress#watch}) as JSON lines until it is ready or
   * failed, or {@code timeout} passed. A client that goes away ends it.
   */
  private static void progress(HttpExchange ex, UdfResource r, Duration timeout)
      throws IOException {
    ex.getResponseHeaders().set("Content-Type", "application/x-ndjson");
    ex.sendResponseHeaders(200, 0);
    UdfProgress.Watch watch = UdfProgress.watch(r, timeout);
    try (OutputStream out = ex.getResponseBody()) {
      for (ObjectNode n = watch.next(); n != null; n = watch.next()) {
        out.write((n + "\n").getBytes(StandardCharsets.UTF_8));
        out.flush();
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new InterruptedIOException("the admin server is stopping");
    }
  }

  /** Resources whose key starts with {@code keyPrefix} (at least 6 hex digits). */
  List<UdfResource> find(String keyPrefix, String tenant) {
    List<UdfResource> out = new ArrayList<>();
    if (keyPrefix.length() < 6) {
      return out;
    }
    for (UdfResource r : registry.all()) {
      if (r.key.hex().startsWith(keyPrefix) && (tenant == null || tenant.equals(r.tenant.name()))) {
        out.add(r);
      }
    }
    return out;
  }

  private String list(String tenant) throws IOException {
    ArrayNode arr = JSON.createArrayNode();
    for (UdfResource r : registry.all()) {
      if (tenant != null && !tenant.equals(r.tenant.name())) {
        continue;
      }
      ObjectNode n = arr.addObject();
      n.put("key", r.key.hex());
      n.put("tenant", r.tenant.name());
      n.put("handler", r.definition.handler());
      n.put("state", state(r));
      n.put("sandbox", r.sandbox().map(Sandbox::id).orElse(null));
      KilnException f = r.failure();
      n.put("error", f == null ? null : f.getMessage());
      n.put("error_code", f == null ? null : f.code().name());
    }
    return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(arr) + "\n";
  }

  /**
   * databend-udf's status page ({@code request_count}, {@code first_request_time}, {@code
   * last_request_time}), summed over the matching sandboxes, plus Kiln's own counters.
   */
  private static String stats(List<UdfResource> matches) throws IOException {
    long requests = 0;
    long rows = 0;
    long rowErrors = 0;
    long failed = 0;
    long restarts = 0;
    int runners = 0;
    int live = 0;
    java.time.Instant first = null;
    java.time.Instant last = null;
    for (UdfResource r : matches) {
      Optional<RunnerPool> pool = pool(r);
      if (pool.isEmpty()) {
        continue;
      }
      RunnerPool.Stats s = pool.get().stats();
      requests += s.requestCount();
      rows += s.rows();
      rowErrors += s.rowErrors();
      failed += s.failedRequests();
      restarts += s.restarts();
      runners += s.runners();
      live += s.liveRunners();
      if (s.firstRequestTime() != null && (first == null || s.firstRequestTime().isBefore(first))) {
        first = s.firstRequestTime();
      }
      if (s.lastRequestTime() != null && (last == null || s.lastRequestTime().isAfter(last))) {
        last = s.lastRequestTime();
      }
    }
    ObjectNode n = JSON.createObjectNode();
    n.put("request_count", requests);
    n.put("first_request_time", first == null ? null : first.toString());
    n.put("last_request_time", last == null ? null : last.toString());
    n.put("rows", rows);
    n.put("row_errors", rowErrors);
    n.put("failed_requests", failed);
    n.put("runners", runners);
    n.put("live_runners", live);
    n.put("runner_restarts", restarts);
    return JSON.writeValueAsString(n) + "\n";
  }

  private static String logs(List<UdfResource> matches) {
    StringBuilder sb = new StringBuilder();
    for (UdfResource r : matches) {
      if (matches.size() > 1) {
        sb.append("== tenant ")
            .append(r.tenant.name())
            .append(", key ")
            .append(r.key.shortForm())
            .append('\n');
      }
      Optional<RunnerPool> pool = pool(r);
      if (pool.isEmpty()) {
        sb.append("(no runners: ").append(state(r)).append(")\n");
        continue;
      }
      for (String line : pool.get().recentOutput()) {
        sb.append(line).append('\n');
      }
    }
    return sb.toString();
  }

  /**
   * {@code starting} (its pipeline runs), {@code busy} (computing a batch), {@code idle} (ready, no
   * call in flight), {@code failed}, {@code stopping} (stopped, its sandbox not gone yet) or {@code
   * stopped}.
   */
  static String state(UdfResource r) {
    if (r.isClosed()) {
      return r.sandbox().map(Sandbox::isRunning).orElse(false) ? "stopping" : "stopped";
    }
    if (!r.ready().isDone()) {
      return "starting";
    }
    if (r.failure() != null) {
      return "failed";
    }
    return r.isBusy() ? "busy" : "idle";
  }

  private static boolean healthy(UdfResource r) {
    return pool(r).map(p -> p.isHealthy() && p.stats().liveRunners() > 0).orElse(false);
  }

  static Optional<RunnerPool> pool(UdfResource r) {
    if (!r.ready().isDone() || r.ready().isCompletedExceptionally()) {
      return Optional.empty();
    }
    return Optional.of(r.ready().join());
  }

  private static String query(URI uri, String name) {
    String q = uri.getRawQuery();
    if (q == null) {
      return null;
    }
    for (String kv : q.split("&")) {
      int eq = kv.indexOf('=');
      if (eq > 0 && kv.substring(0, eq).equals(name)) {
        return java.net.URLDecoder.decode(kv.substring(eq + 1), StandardCharsets.UTF_8);
      }
    }
    return null;
  }

  static void respond(HttpExchange ex, int status, String type, String body) throws IOException {
    byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
    ex.getResponseHeaders().set("Content-Type", type);
    ex.sendResponseHeaders(status, bytes.length);
    try (OutputStream out = ex.getResponseBody()) {
      out.write(bytes);
    }
  }
}
