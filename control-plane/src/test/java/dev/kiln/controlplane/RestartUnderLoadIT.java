package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.DataType;
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
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code kill -9} of {@code kiln serve} while Databend-like mini-batches are in flight, then a new
 * server at once on the same ports and data directory: with Databend's retries (8, 50 ms ×2), every
 * mini-batch must complete with every row right, and none may be lost to a connection that broke
 * after its response headers.
 *
 * <p>The servers run {@code target/kiln.jar} with bin/kiln's JVM flags and write their output to a
 * file (a child whose output nobody reads can never block), and times of their log lines are taken
 * from the lines themselves, so a busy test JVM does not skew them. {@value #THREADS} threads run
 * the {@value #CALLS} mini-batches to keep this test's own load modest; {@code RestartBenchmark}
 * has Databend's full 256-in-flight shape.
 */
class RestartUnderLoadIT {
  private static final Pattern READY = Pattern.compile("Kiln ready in (\\d+) ms");
  private static final Pattern STAMP = Pattern.compile("^(\\d{2}:\\d{2}:\\d{2}\\.\\d{3}) ");
  private static final int CALLS = 256;
  private static final int THREADS = 64;
  private static final int ROWS = 4096;
  private static final Duration START_WAIT = Duration.ofSeconds(60);
  private static final List<String> TYPES = List.of("BIGINT NULL", "BIGINT NULL");
  private static final String CODE =
      "def add(a, b):\n    return None if a is None or b is None else a + b\n";

  @TempDir Path dir;

  /**
   * A {@code kiln serve} child process, its output file, its "Kiln ready" line, and wall-clock
   * milliseconds of its spawn and of that line.
   */
  record Serve(Process process, Path output, String readyLine, long spawnMillis, long readyMillis) {
    /** Milliseconds from spawn to the start of {@code KilnServer.start} (JVM and CLI start). */
    long jvmStartMillis() {
      Matcher m = READY.matcher(readyLine);
      return m.find() ? readyMillis - Long.parseLong(m.group(1)) - spawnMillis : -1;
    }
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /**
   * Wall-clock milliseconds of a log line's {@code HH:mm:ss.SSS} stamp (today, or yesterday when
   * that is closer to now), or -1 for a line without one.
   */
  static long stampMillis(String line, long nowMillis) {
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

  private Serve startServe(String name, int grpc, int flight, int admin, Path data)
      throws Exception {
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    // The flags bin/kiln passes (bin/lib/java.sh).
    cmd.addAll(
        List.of(
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--enable-native-access=ALL-UNNAMED",
            "-Dio.netty.noUnsafe=false",
            "--sun-misc-unsafe-memory-access=allow"));
    // The jar bin/kiln runs (failsafe runs after package); the test class path otherwise.
    Path jar = Path.of("target", "kiln.jar");
    if (Files.isRegularFile(jar)) {
      cmd.addAll(List.of("-jar", jar.toString()));
    } else {
      cmd.addAll(List.of("-cp", System.getProperty("java.class.path"), Kiln.class.getName()));
    }
    cmd.addAll(
        List.of(
            "serve",
            "--grpc-port",
            Integer.toString(grpc),
            "--flight-port",
            Integer.toString(flight),
            "--admin-port",
            Integer.toString(admin),
            "--bind-host",
            "127.0.0.1",
            "--data-dir",
            data.toString(),
            "--base-image",
            KilnTestSupport.baseImage()));
    Path output = dir.resolve(name + ".log");
    long spawnMillis = System.currentTimeMillis();
    Process p =
        new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(output.toFile()).start();
    long deadline = System.nanoTime() + START_WAIT.toNanos();
    while (System.nanoTime() < deadline && p.isAlive()) {
      for (String line : Files.readAllLines(output, StandardCharsets.UTF_8)) {
        if (READY.matcher(line).find()) {
          return new Serve(
              p, output, line, spawnMillis, stampMillis(line, System.currentTimeMillis()));
        }
      }
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(20));
    }
    String stacks = p.isAlive() ? threadDump(p.pid()) : "";
    p.destroy();
    throw new AssertionError(
        "kiln serve did not become ready in "
            + START_WAIT
            + " (alive: "
            + p.isAlive()
            + "); output:\n"
            + Files.readString(output, StandardCharsets.UTF_8)
            + "\n"
            + stacks);
  }

  /** The stuck server's threads, to show where its start waits. */
  private static String threadDump(long pid) throws Exception {
    Path jcmd = Path.of(System.getProperty("java.home"), "bin", "jcmd");
    Process p =
        new ProcessBuilder(jcmd.toString(), Long.toString(pid), "Thread.print")
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    p.waitFor(30, TimeUnit.SECONDS);
    return out;
  }

  /** Stops a server gracefully (its sandboxes stopped, nothing left mounted). */
  private static void stop(Serve s) throws InterruptedException {
    if (s != null && s.process().isAlive()) {
      s.process().destroy();
      if (!s.process().waitFor(60, TimeUnit.SECONDS)) {
        s.process().destroyForcibly();
      }
    }
  }

  /** Mini-batch {@code i}: arg1 = i·ROWS + r (NULL every 7th row), arg2 = 3r (NULL every 11th). */
  static VectorSchemaRoot input(BufferAllocator allocator, int i, int rows) throws Exception {
    List<DataType> types = new ArrayList<>();
    for (String t : TYPES) {
      types.add(DataType.parse(t));
    }
    VectorSchemaRoot root = VectorSchemaRoot.create(DatabendCalls.inputSchema(types), allocator);
    BigIntVector a = (BigIntVector) root.getVector(0);
    BigIntVector b = (BigIntVector) root.getVector(1);
    a.allocateNew(rows);
    b.allocateNew(rows);
    for (int r = 0; r < rows; r++) {
      long n = (long) i * rows + r;
      if (n % 7 == 0) {
        a.setNull(r);
      } else {
        a.set(r, n);
      }
      if (n % 11 == 0) {
        b.setNull(r);
      } else {
        b.set(r, 3L * r);
      }
    }
    root.setRowCount(rows);
    return root;
  }

  /** Rows of mini-batch {@code i} whose result is not a+b (NULL when either is NULL). */
  static int wrongRows(DatabendCalls.Outcome o, int i, int rows) {
    int wrong = 0;
    int r = 0;
    for (var column : o.columns()) {
      BigIntVector v = (BigIntVector) column;
      for (int j = 0; j < v.getValueCount(); j++, r++) {
        long n = (long) i * rows + r;
        boolean isNull = n % 7 == 0 || n % 11 == 0;
        if (isNull ? !v.isNull(j) : v.isNull(j) || v.get(j) != n + 3L * r) {
          wrong++;
        }
      }
    }
    return wrong + Math.abs(rows - r);
  }

  @Test
  void everyMiniBatchCompletesAcrossAKillAndRestart() throws Exception {
    int grpc = freePort();
    int flight = freePort();
    int admin = freePort();
    Path data = dir.resolve("data");
    Serve first = startServe("first", grpc, flight, admin, data);
    Serve second = null;
    DatabendCalls.Outcome[] outcomes = new DatabendCalls.Outcome[CALLS];
    ExecutorService pool =
        Executors.newFixedThreadPool(THREADS, Thread.ofPlatform().daemon().factory());
    try (BufferAllocator allocator = new RootAllocator();
        AutoCloseable closeOutcomes =
            () -> {
              for (DatabendCalls.Outcome o : outcomes) {
                if (o != null) {
                  o.close();
                }
              }
            };
        // Closed before the outcomes and the allocator: no call outlives them.
        AutoCloseable stopCalls =
            () -> {
              pool.shutdownNow();
              assertThat(pool.awaitTermination(60, TimeUnit.SECONDS))
                  .as("mini-batches stopped")
                  .isTrue();
            }) {
      DatabendClient.Resource resource;
      try (DatabendClient api = KilnTestSupport.client(grpc)) {
        // The first apply builds the image and starts the sandbox: more than Databend's 5 s.
        resource =
            api.apply(
                "t1", spec("add", TYPES, "BIGINT NULL", CODE), List.of(), Duration.ofSeconds(60));
      }
      DatabendCalls calls =
          new DatabendCalls(
              allocator,
              new DatabendCalls.Target(
                  resource.endpoint(), resource.headers(), "t1", "add", "add", "restart-it"));
      try (VectorSchemaRoot warm = input(allocator, 0, 16);
          DatabendCalls.Outcome o = calls.exchange(warm)) {
        assertThat(o.result())
            .as("the warm-up call: %s", o.failures())
            .isEqualTo(DatabendCalls.Result.OK);
        assertThat(wrongRows(o, 0, 16)).isZero();
      }

      CountDownLatch firstDone = new CountDownLatch(1);
      long loadStart = System.nanoTime();
      List<Future<?>> done = new ArrayList<>();
      for (int i = 0; i < CALLS; i++) {
        int n = i;
        done.add(
            pool.submit(
                () -> {
                  try (VectorSchemaRoot in = input(allocator, n, ROWS)) {
                    outcomes[n] = calls.exchange(in);
                  } finally {
                    firstDone.countDown();
                  }
                  return null;
                }));
      }
      // Kill as soon as the first mini-batch is back: the others are then in the server.
      assertThat(firstDone.await(60, TimeUnit.SECONDS)).as("a mini-batch done").isTrue();
      long killAt = System.nanoTime();
      long killMillis = System.currentTimeMillis();
      first.process().destroyForcibly(); // SIGKILL: no shutdown hook runs
      assertThat(first.process().waitFor(30, TimeUnit.SECONDS)).isTrue();
      long goneMillis = System.currentTimeMillis();
      second = startServe("second", grpc, flight, admin, data);
      for (Future<?> f : done) {
        f.get(60, TimeUnit.SECONDS);
      }

      Map<Integer, Integer> retries = new TreeMap<>();
      List<String> problems = new ArrayList<>();
      long firstOkAfterRestart = Long.MAX_VALUE;
      int doneAtKill = 0;
      DatabendCalls.Outcome mostRetried = outcomes[0];
      for (int i = 0; i < CALLS; i++) {
        DatabendCalls.Outcome o = outcomes[i];
        retries.merge(o.retries(), 1, Integer::sum);
        if (o.retries() > mostRetried.retries()) {
          mostRetried = o;
        }
        if (o.endNanos() <= killAt) {
          doneAtKill++;
        }
        if (o.result() != DatabendCalls.Result.OK) {
          problems.add("mini-batch " + i + " " + o.result() + ": " + o.failures().getLast());
        } else {
          int wrong = wrongRows(o, i, ROWS);
          if (wrong > 0) {
            problems.add("mini-batch " + i + ": " + wrong + " wrong rows");
          }
          if (!o.failures().isEmpty() && o.failures().getLast().atNanos() > killAt) {
            firstOkAfterRestart = Math.min(firstOkAfterRestart, o.endNanos());
          }
        }
      }
      System.out.printf(
          "restart under load: %d mini-batches x %d rows on %d threads, killed %d ms into the"
              + " load with %d done; retries used (retries=count) %s; kill -> \"Kiln ready\" %d ms"
              + " (old process gone %d ms, spawn %d ms, JVM and CLI start %d ms, KilnServer.start %d ms; the first server"
              + " took %d ms JVM start and %d ms KilnServer.start); kill -> first call that"
              + " succeeded after failing across the restart %s ms; %d problems%n",
          CALLS,
          ROWS,
          THREADS,
          TimeUnit.NANOSECONDS.toMillis(killAt - loadStart),
          doneAtKill,
          retries,
          second.readyMillis() - killMillis,
          goneMillis - killMillis,
          second.spawnMillis() - killMillis,
          second.jvmStartMillis(),
          second.readyMillis() - second.spawnMillis() - second.jvmStartMillis(),
          first.jvmStartMillis(),
          first.readyMillis() - first.spawnMillis() - first.jvmStartMillis(),
          firstOkAfterRestart == Long.MAX_VALUE
              ? "never"
              : Long.toString(TimeUnit.NANOSECONDS.toMillis(firstOkAfterRestart - killAt)),
          problems.size());
      System.out.println("the restarted server's log, from the kill:");
      for (String line : Files.readAllLines(second.output(), StandardCharsets.UTF_8)) {
        long at = stampMillis(line, killMillis);
        System.out.printf(
            "  %s  %s%n", at < 0 ? "        " : "+%5d ms".formatted(at - killMillis), line);
      }
      System.out.println("attempts of a mini-batch with the most retries, from the kill:");
      for (DatabendCalls.Failure f : mostRetried.failures()) {
        System.out.printf(
            "  +%5d ms  attempt %d failed: %s%n",
            TimeUnit.NANOSECONDS.toMillis(f.atNanos() - killAt),
            f.attempt(),
            f.message().lines().findFirst().orElse(""));
      }
      problems.stream().limit(20).forEach(p -> System.out.println("  problem: " + p));
      assertThat(doneAtKill)
          .as("mini-batches done when the server was killed (the rest were in flight)")
          .isLessThan(CALLS / 2);
      assertThat(problems).as("mini-batches that failed, were lost or came back wrong").isEmpty();
    } finally {
      stop(first);
      stop(second);
    }
  }
}
