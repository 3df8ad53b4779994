package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.QueryScripts;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code kiln serve} as its own process: SIGTERM stops it cleanly, and after a SIGKILL the next
 * server on the same data directory reaps what the dead one left.
 */
class KilnServeProcessIT {
  private static final Pattern READY =
      Pattern.compile("Kiln ready .* grpc=[^:]+:(\\d+) flight=\\S+ admin=[^:]+:(\\d+)");

  @TempDir Path dataDir;

  /** Every server this test started; any still running when it ends is stopped, failed or not. */
  private final List<Process> started = new ArrayList<>();

  @AfterEach
  void stopWhatIsLeft() throws InterruptedException {
    for (Process p : started) {
      if (p.isAlive()) {
        p.destroy();
        if (!p.waitFor(60, TimeUnit.SECONDS)) {
          p.destroyForcibly();
        }
      }
    }
  }

  /** A running {@code kiln serve} child process and the ports it reported. */
  record Serve(
      Process process,
      int grpcPort,
      int adminPort,
      List<String> startup,
      LinkedBlockingQueue<String> log) {}

  /** A server with the default warm pool: its warm sandboxes must go with it as well. */
  private Serve startServe() throws Exception {
    return startServe("2");
  }

  private Serve startServe(String warmPool) throws Exception {
    return startServe(warmPool, List.of(), Map.of());
  }

  /** A server with {@code flags} added, whose process has {@code env} added to its environment. */
  private Serve startServe(String warmPool, List<String> flags, Map<String, String> env)
      throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    cmd.add("--add-opens=java.base/java.nio=ALL-UNNAMED");
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(Kiln.class.getName());
    cmd.addAll(
        List.of(
            "serve",
            "--grpc-port",
            "0",
            "--flight-port",
            "0",
            "--admin-port",
            "0",
            "--bind-host",
            "127.0.0.1",
            "--data-dir",
            dataDir.toString(),
            "--base-image",
            KilnTestSupport.baseImage(),
            "--warm-pool",
            warmPool));
    cmd.addAll(flags);
    ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true);
    pb.environment().putAll(env);
    Process p = pb.start();
    started.add(p);
    LinkedBlockingQueue<String> log = new LinkedBlockingQueue<>();
    Thread.ofVirtual()
        .start(
            () -> {
              try (BufferedReader r =
                  new BufferedReader(
                      new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                  log.add(line);
                }
              } catch (IOException e) {
                // process ended
              }
            });
    Instant deadline = Instant.now().plus(Duration.ofSeconds(60));
    List<String> seen = new ArrayList<>();
    while (Instant.now().isBefore(deadline)) {
      String line = log.poll(200, TimeUnit.MILLISECONDS);
      if (line == null) {
        if (!p.isAlive()) {
          break;
        }
        continue;
      }
      seen.add(line);
      Matcher m = READY.matcher(line);
      if (m.find()) {
        return new Serve(p, Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2)), seen, log);
      }
    }
    p.destroyForcibly();
    throw new AssertionError(
        "kiln serve did not become ready; output:\n" + String.join("\n", seen));
  }

  /**
   * Secrets from a file and from the server's environment reach the UDF's {@code os.environ} (the
   * UDF returns their digests, so the values never travel back) and appear nowhere else: not in the
   * server's output, its admin pages, SHOW WORKERS, or any file under the data directory (images,
   * layers, kept definitions, workers, the sandboxes' runtime files) while the UDF runs.
   */
  @Test
  void secretsReachTheUdfAndNothingElse() throws Exception {
    String fromFile = "kiln-secret-file-" + UUID.randomUUID();
    String fromEnv = "kiln-secret-env-" + UUID.randomUUID();
    Path conf = Files.createDirectories(dataDir.resolveSibling(dataDir.getFileName() + "-conf"));
    Files.writeString(conf.resolve("api_key"), fromFile + "\n");
    Path envFile =
        Files.writeString(
            conf.resolve("udf_env.toml"),
            """
            [udf_env]
            "acme.digest" = { REGION = "eu", API_KEY = { secret_file = "api_key" }, \
            DB_PASSWORD = { secret_env = "ACME_DB_PASSWORD" } }
            """);
    Serve serve =
        startServe(
            "0", List.of("--udf-env", envFile.toString()), Map.of("ACME_DB_PASSWORD", fromEnv));
    String code =
        """
        import hashlib
        import os

        def digest(name: str) -> str:
            return hashlib.sha256(os.environ.get(name, "").encode()).hexdigest()
        """;
    String script =
        QueryScripts.udf(code, "digest").inputs("STRING NULL").result("STRING NULL").render();
    List<String> pages = new ArrayList<>();
    try (DatabendClient api = KilnTestSupport.client(serve.grpcPort());
        BufferAllocator allocator = new RootAllocator()) {
      DatabendClient.Resource r = api.createWorker("acme", "digest", script, Duration.ofSeconds(5));
      for (var e : Map.of("API_KEY", fromFile, "DB_PASSWORD", fromEnv, "REGION", "eu").entrySet()) {
        assertThat(
                KilnTestSupport.call(
                        allocator,
                        r,
                        "acme",
                        "digest",
                        List.of("STRING NULL"),
                        "[[\"" + e.getKey() + "\"]]")
                    .get(0)
                    .get(0))
            .as(e.getKey() + " reached the UDF")
            .isEqualTo(sha256(e.getValue()));
      }
      pages.add(api.listWorkers("acme", Duration.ofSeconds(5)).toString());
      int adminPort = serve.adminPort();
      String key = r.key().substring(0, 12);
      for (String path :
          List.of(
              "/udfs",
              "/udfs/" + key + "/logs",
              "/udfs/" + key + "/stats",
              "/udfs/" + key + "/progress?tenant=acme",
              "/workers/acme/digest/stats",
              "/sandboxes",
              "/metrics")) {
        pages.add(
            HttpClient.newHttpClient()
                .send(
                    HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + adminPort + path))
                        .build(),
                    HttpResponse.BodyHandlers.ofString())
                .body());
      }
      // Every file under the data directory while the UDF runs, the sandboxes' mounted file
      // systems aside (the image's own files).
      List<String> mounts = KilnTestSupport.mountsUnder(dataDir);
      List<Path> holding = new ArrayList<>();
      int files = 0;
      try (var walk = Files.walk(dataDir)) {
        for (Path f : (Iterable<Path>) walk::iterator) {
          if (!Files.isRegularFile(f, LinkOption.NOFOLLOW_LINKS)
              || mounts.stream().anyMatch(m -> f.toString().startsWith(m + "/"))) {
            continue;
          }
          files++;
          String text = new String(Files.readAllBytes(f), StandardCharsets.ISO_8859_1);
          if (text.contains(fromFile) || text.contains(fromEnv)) {
            holding.add(f);
          }
        }
      }
      assertThat(files).as("files searched").isGreaterThan(10);
      assertThat(holding).as("files under the data directory holding a secret").isEmpty();
    }
    serve.process().destroy();
    assertThat(serve.process().waitFor(60, TimeUnit.SECONDS)).isTrue();
    List<String> output = new ArrayList<>(serve.startup());
    output.addAll(serve.log());
    assertThat(output).anyMatch(l -> l.contains("UDF environment from"));
    assertThat(pages).hasSize(8).noneMatch(p -> p.contains(fromFile) || p.contains(fromEnv));
    assertThat(output).noneMatch(l -> l.contains(fromFile) || l.contains(fromEnv));
  }

  private static String sha256(String s) throws Exception {
    return HexFormat.of()
        .formatHex(MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
  }

  private void provisionOneUdf(int grpcPort) throws Exception {
    try (DatabendClient api = KilnTestSupport.client(grpcPort);
        BufferAllocator allocator = new RootAllocator()) {
      String code = "def inc(x):\n    return x + 1\n";
      DatabendClient.Resource r = api.apply("t1", spec("inc", List.of("INT"), "INT", code));
      assertThat(KilnTestSupport.call(allocator, r, "t1", "inc", List.of("INT"), "[[41]]"))
          .isEqualTo(List.of(List.of(42)));
    }
  }

  @Test
  void sigtermLeavesNoSandboxOrMountBehind() throws Exception {
    Serve serve = startServe();
    provisionOneUdf(serve.grpcPort());
    assertThat(KilnTestSupport.runscContainers(dataDir)).isNotEmpty();

    serve.process().destroy(); // SIGTERM
    assertThat(serve.process().waitFor(60, TimeUnit.SECONDS)).as("exited after SIGTERM").isTrue();
    KilnTestSupport.assertNothingLeftBehind(dataDir);
  }

  @Test
  void afterSigkillTheNextServerReapsWhatTheDeadOneLeft() throws Exception {
    Serve first = startServe();
    provisionOneUdf(first.grpcPort());
    first.process().destroyForcibly(); // SIGKILL: no shutdown hook runs
    assertThat(first.process().waitFor(30, TimeUnit.SECONDS)).isTrue();

    // No warm pool here: every sandbox found running after the start would be the dead one's.
    Serve second = startServe("0");
    try {
      // Its own warm-up probes the base's Python in a sandbox once per data directory (unless the
      // dead one finished that); the probe's result is on disk once its sandbox is gone.
      KilnTestSupport.eventually(
          "the new server's warm-up knows the base's Python",
          Duration.ofSeconds(60),
          () -> {
            try (var files = Files.list(dataDir.resolve("runtimes"))) {
              return files.anyMatch(f -> f.getFileName().toString().endsWith(".json"));
            } catch (IOException e) {
              return false;
            }
          });
      KilnTestSupport.assertNothingLeftBehind(dataDir);
      provisionOneUdf(second.grpcPort());
    } finally {
      second.process().destroy();
      second.process().waitFor(60, TimeUnit.SECONDS);
    }
    KilnTestSupport.assertNothingLeftBehind(dataDir);
  }
}
