package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
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
  record Serve(Process process, int grpcPort, LinkedBlockingQueue<String> log) {}

  /** A server with the default warm pool: its warm sandboxes must go with it as well. */
  private Serve startServe() throws Exception {
    return startServe("2");
  }

  private Serve startServe(String warmPool) throws Exception {
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
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
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
        return new Serve(p, Integer.parseInt(m.group(1)), log);
      }
    }
    p.destroyForcibly();
    throw new AssertionError(
        "kiln serve did not become ready; output:\n" + String.join("\n", seen));
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
