package dev.kiln.controlplane;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.ZoneId;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code kiln serve} as a child process, started as {@code bin/kiln} starts it (its JVM flags, the
 * built {@code kiln.jar} when there is one), its output in a file so it can never block on a pipe;
 * for the tests and benchmarks that kill a server and start another on the same ports and data.
 *
 * @param process the server's process
 * @param output the file its output goes to
 * @param readyLine its "Kiln ready" log line
 * @param spawnMillis wall-clock milliseconds when it was spawned
 * @param readyMillis wall-clock milliseconds of the ready line's own time stamp
 */
public record ServeProcess(
    Process process, Path output, String readyLine, long spawnMillis, long readyMillis) {
  private static final Pattern READY = Pattern.compile("Kiln ready in (\\d+) ms");
  private static final Pattern STAMP = Pattern.compile("^(\\d{2}:\\d{2}:\\d{2}\\.\\d{3}) ");

  /** The three ports of a server. */
  public record Ports(int grpc, int flight, int admin) {
    /** Three ports free on loopback now. */
    public static Ports free() throws IOException {
      return new Ports(freePort(), freePort(), freePort());
    }

    private static int freePort() throws IOException {
      try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
        return s.getLocalPort();
      }
    }
  }

  /**
   * Starts a server and waits until it logs that it is ready.
   *
   * @param jar the built {@code kiln.jar}; when missing, this JVM's class path is used
   * @param baseImage the base image, or null for the server's default
   * @throws IllegalStateException with its output when it is not ready within {@code wait}
   */
  public static ServeProcess start(
      Path jar, Path output, Ports ports, Path data, String baseImage, Duration wait)
      throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    // The flags bin/kiln passes (bin/lib/java.sh).
    cmd.addAll(
        List.of(
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--enable-native-access=ALL-UNNAMED",
            "-Dio.netty.noUnsafe=false",
            "-Dio.netty.tryReflectionSetAccessible=true",
            "--sun-misc-unsafe-memory-access=allow"));
    if (Files.isRegularFile(jar)) {
      // bin/kiln serve's class-data archive: written by a clean stop, used by every start after;
      // one made from an older jar is dropped, as the JVM would neither use nor replace it.
      Path cache = Files.createDirectories(Path.of(KilnConfig.cacheDir()));
      Path archive = cache.resolve("kiln-serve.jsa");
      if (Files.isRegularFile(archive)
          && Files.getLastModifiedTime(jar).compareTo(Files.getLastModifiedTime(archive)) > 0) {
        Files.deleteIfExists(archive);
      }
      cmd.addAll(
          List.of(
              "-XX:+AutoCreateSharedArchive", "-XX:SharedArchiveFile=" + archive, "-Xlog:cds=off"));
      if (Runtime.version().feature() >= 24) {
        cmd.add("-Xlog:aot=off");
      }
      cmd.addAll(List.of("-jar", jar.toString()));
    } else {
      cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Kiln.class.getName()));
    }
    cmd.addAll(
        List.of(
            "serve",
            "--grpc-port",
            Integer.toString(ports.grpc()),
            "--flight-port",
            Integer.toString(ports.flight()),
            "--admin-port",
            Integer.toString(ports.admin()),
            "--bind-host",
            "127.0.0.1",
            "--data-dir",
            data.toString()));
    if (baseImage != null && !baseImage.isBlank()) {
      cmd.addAll(List.of("--base-image", baseImage));
    }
    long spawn = System.currentTimeMillis();
    Process p =
        new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(output.toFile()).start();
    long deadline = System.nanoTime() + wait.toNanos();
    while (System.nanoTime() < deadline && p.isAlive()) {
      for (String line : Files.readAllLines(output, StandardCharsets.UTF_8)) {
        if (READY.matcher(line).find()) {
          return new ServeProcess(
              p, output, line, spawn, stampMillis(line, System.currentTimeMillis()));
        }
      }
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10));
    }
    boolean alive = p.isAlive();
    p.destroy();
    throw new IllegalStateException(
        "kiln serve did not become ready in "
            + wait
            + " (alive: "
            + alive
            + "); output:\n"
            + Files.readString(output, StandardCharsets.UTF_8));
  }

  /** Milliseconds from spawn to the start of {@code KilnServer.start} (JVM and CLI start). */
  public long jvmStartMillis() {
    Matcher m = READY.matcher(readyLine);
    return m.find() ? readyMillis - Long.parseLong(m.group(1)) - spawnMillis : -1;
  }

  /**
   * Wall-clock milliseconds of a log line's {@code HH:mm:ss.SSS} stamp (today, or yesterday when
   * that is closer to now), or -1 for a line without one.
   */
  public static long stampMillis(String line, long nowMillis) {
    Matcher m = STAMP.matcher(line);
    if (!m.find()) {
      return -1;
    }
    ZoneId zone = ZoneId.systemDefault();
    long t =
        LocalDate.now(zone)
            .atTime(LocalTime.parse(m.group(1)))
            .atZone(zone)
            .toInstant()
            .toEpochMilli();
    return t - nowMillis > TimeUnit.HOURS.toMillis(12) ? t - TimeUnit.DAYS.toMillis(1) : t;
  }

  /** Stops the server gracefully (its sandboxes stopped, nothing left mounted). */
  public void stop() throws InterruptedException {
    if (process.isAlive()) {
      process.destroy();
      if (!process.waitFor(60, TimeUnit.SECONDS)) {
        process.destroyForcibly();
      }
    }
  }
}
