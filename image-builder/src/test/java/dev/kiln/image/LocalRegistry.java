package dev.kiln.image;

import static org.assertj.core.api.Assertions.fail;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A real OCI registry (the CNCF distribution registry, Debian package {@code docker-registry}) run
 * as a child process on a free loopback port, with its own storage and config under a temporary
 * directory. Not its systemd service.
 */
public final class LocalRegistry implements AutoCloseable {
  private static final Duration STARTUP = Duration.ofSeconds(30);

  private final Process process;
  private final int port;
  private final StringBuffer output = new StringBuffer();

  private LocalRegistry(Process process, int port) {
    this.process = process;
    this.port = port;
  }

  public static LocalRegistry start(Path dir) throws IOException, InterruptedException {
    return start(dir, "");
  }

  /**
   * A registry that asks for a login (HTTP Basic, an htpasswd file holding {@code user} with {@code
   * password}, bcrypt-hashed as the registry requires).
   */
  public static LocalRegistry startWithLogin(Path dir, String user, String password)
      throws IOException, InterruptedException {
    Files.createDirectories(dir);
    byte[] salt = new byte[16];
    new java.security.SecureRandom().nextBytes(salt);
    Path htpasswd =
        Files.writeString(
            dir.resolve("htpasswd"),
            user
                + ":"
                + org.bouncycastle.crypto.generators.OpenBSDBCrypt.generate(
                    "2a", password.toCharArray(), salt, 6)
                + "\n");
    return start(
        dir,
        """
        auth:
          htpasswd:
            realm: kiln-test
            path: %s
        """
            .formatted(htpasswd));
  }

  private static LocalRegistry start(Path dir, String extraConfig)
      throws IOException, InterruptedException {
    Path binary = binary();
    Files.createDirectories(dir.resolve("storage"));
    int port;
    try (ServerSocket probe = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = probe.getLocalPort();
    }
    Path config =
        Files.writeString(
            dir.resolve("config.yml"),
            """
            version: 0.1
            log:
              level: info
            storage:
              filesystem:
                rootdirectory: %s
              delete:
                enabled: true
            http:
              addr: 127.0.0.1:%d
            """
                    .formatted(dir.resolve("storage"), port)
                + extraConfig);
    Process process =
        new ProcessBuilder(binary.toString(), "serve", config.toString())
            .redirectErrorStream(true)
            .start();
    LocalRegistry registry = new LocalRegistry(process, port);
    try {
      registry.awaitListening();
    } catch (IOException | InterruptedException | RuntimeException e) {
      registry.close();
      throw e;
    }
    return registry;
  }

  private static Path binary() {
    for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
      Path candidate = Path.of(dir, "docker-registry");
      if (Files.isExecutable(candidate)) {
        return candidate;
      }
    }
    Path usual = Path.of("/usr/bin/docker-registry");
    if (Files.isExecutable(usual)) {
      return usual;
    }
    return fail(
        "the registry binary docker-registry is not installed; install it with"
            + " 'apt-get install -y docker-registry' (the registry tests need a real registry)");
  }

  /** Waits for the registry's own "listening on" log line, then checks that /v2/ answers. */
  private void awaitListening() throws IOException, InterruptedException {
    CompletableFuture<Void> listening = new CompletableFuture<>();
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader lines =
                  new BufferedReader(
                      new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                  output.append(line).append('\n');
                  if (line.contains("listening on 127.0.0.1:" + port)) {
                    listening.complete(null);
                  }
                }
              } catch (IOException e) {
                // The process went away; the future below reports it.
              }
              listening.completeExceptionally(
                  new IOException("docker-registry exited before listening:\n" + output));
            },
            "docker-registry-output");
    reader.setDaemon(true);
    reader.start();
    try {
      listening.get(STARTUP.toSeconds(), TimeUnit.SECONDS);
    } catch (ExecutionException e) {
      throw new IOException(e.getCause().getMessage(), e.getCause());
    } catch (TimeoutException e) {
      throw new IOException("docker-registry did not listen within " + STARTUP + ":\n" + output, e);
    }
    HttpResponse<Void> ping =
        HttpClient.newHttpClient()
            .send(
                HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + port + "/v2/"))
                    .timeout(Duration.ofSeconds(5))
                    .build(),
                HttpResponse.BodyHandlers.discarding());
    // 401: it asks for a login (startWithLogin), and answers.
    if (ping.statusCode() != 200 && ping.statusCode() != 401) {
      throw new IOException(
          "docker-registry answers /v2/ with " + ping.statusCode() + ":\n" + output);
    }
  }

  public int port() {
    return port;
  }

  boolean isRunning() {
    return process.isAlive();
  }

  String output() {
    return output.toString();
  }

  /** Stops the registry (SIGTERM, then SIGKILL after 10 s) and waits for it to exit. */
  @Override
  public void close() {
    process.destroy();
    try {
      if (!process.waitFor(10, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      }
    } catch (InterruptedException e) {
      process.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }
}
