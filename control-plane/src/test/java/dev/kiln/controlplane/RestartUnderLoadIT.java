package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.DataType;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
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
 */
class RestartUnderLoadIT {
  private static final Pattern READY = Pattern.compile("Kiln ready in (\\d+) ms");
  private static final int CALLS = 256;
  private static final int ROWS = 4096;
  private static final List<String> TYPES = List.of("BIGINT NULL", "BIGINT NULL");
  private static final String CODE =
      "def add(a, b):\n    return None if a is None or b is None else a + b\n";

  @TempDir Path dataDir;

  /** A {@code kiln serve} child process; {@code log} holds its lines with their arrival time. */
  record Serve(Process process, LinkedBlockingQueue<Line> log, List<Line> seen, long readyNanos) {}

  record Line(long nanos, String text) {}

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  private Serve startServe(int grpc, int flight, int admin) throws Exception {
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
            Integer.toString(grpc),
            "--flight-port",
            Integer.toString(flight),
            "--admin-port",
            Integer.toString(admin),
            "--bind-host",
            "127.0.0.1",
            "--data-dir",
            dataDir.toString(),
            "--base-image",
            KilnTestSupport.baseImage()));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    LinkedBlockingQueue<Line> log = new LinkedBlockingQueue<>();
    Thread.ofPlatform()
        .daemon()
        .start(
            () -> {
              try (BufferedReader r =
                  new BufferedReader(
                      new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                  log.add(new Line(System.nanoTime(), line));
                }
              } catch (IOException e) {
                // process ended
              }
            });
    long deadline = System.nanoTime() + Duration.ofSeconds(120).toNanos();
    List<Line> seen = new ArrayList<>();
    while (System.nanoTime() < deadline) {
      Line line = log.poll(200, TimeUnit.MILLISECONDS);
      if (line == null) {
        if (!p.isAlive()) {
          break;
        }
        continue;
      }
      seen.add(line);
      if (READY.matcher(line.text()).find()) {
        return new Serve(p, log, seen, line.nanos());
      }
    }
    String stacks = p.isAlive() ? mainThreadStack(p.pid()) : "";
    p.destroyForcibly();
    throw new AssertionError(
        stacks
            + "kiln serve did not become ready (alive: "
            + p.isAlive()
            + "); output:\n"
            + String.join("\n", seen.stream().map(Line::text).toList()));
  }

  /** The stuck server's main thread, to show where its start waits. */
  private static String mainThreadStack(long pid) throws Exception {
    Path jcmd = Path.of(System.getProperty("java.home"), "bin", "jcmd");
    Process p =
        new ProcessBuilder(jcmd.toString(), Long.toString(pid), "Thread.print")
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    p.waitFor(30, TimeUnit.SECONDS);
    int at = out.indexOf("\"main\"");
    return at < 0 ? out : out.substring(at, Math.min(out.length(), at + 4000)) + "\n";
  }

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
    Serve first = startServe(grpc, flight, admin);
    Serve second = null;
    DatabendCalls.Outcome[] outcomes = new DatabendCalls.Outcome[CALLS];
    try (BufferAllocator allocator = new RootAllocator();
        AutoCloseable closeOutcomes =
            () -> {
              for (DatabendCalls.Outcome o : outcomes) {
                if (o != null) {
                  o.close();
                }
              }
            }) {
      DatabendClient.Resource resource;
      try (DatabendClient api = KilnTestSupport.client(grpc)) {
        resource = api.apply("t1", spec("add", TYPES, "BIGINT NULL", CODE));
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
      List<Thread> threads = new ArrayList<>();
      for (int i = 0; i < CALLS; i++) {
        int n = i;
        // A platform thread each, as Databend's runtime has a task each.
        threads.add(
            Thread.ofPlatform()
                .daemon()
                .start(
                    () -> {
                      try (VectorSchemaRoot in = input(allocator, n, ROWS)) {
                        outcomes[n] = calls.exchange(in);
                      } catch (Exception e) {
                        throw new IllegalStateException(e);
                      } finally {
                        firstDone.countDown();
                      }
                    }));
      }
      // Kill as soon as the first mini-batch is back: the others are then in the server.
      assertThat(firstDone.await(60, TimeUnit.SECONDS)).as("a mini-batch done").isTrue();
      long killAt = System.nanoTime();
      first.process().destroyForcibly(); // SIGKILL: no shutdown hook runs
      assertThat(first.process().waitFor(30, TimeUnit.SECONDS)).isTrue();
      second = startServe(grpc, flight, admin);
      long readyAt = second.readyNanos();
      for (Thread t : threads) {
        assertThat(t.join(Duration.ofMinutes(5))).as("mini-batch finished").isTrue();
      }

      Map<Integer, Integer> retries = new TreeMap<>();
      List<String> problems = new ArrayList<>();
      long firstOkAfterKill = Long.MAX_VALUE;
      int doneAtKill = 0;
      for (int i = 0; i < CALLS; i++) {
        DatabendCalls.Outcome o = outcomes[i];
        retries.merge(o.retries(), 1, Integer::sum);
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
          if (o.endNanos() > killAt) {
            firstOkAfterKill = Math.min(firstOkAfterKill, o.endNanos());
          }
        }
      }
      Matcher m = READY.matcher(second.seen().getLast().text());
      System.out.printf(
          "restart under load: %d mini-batches x %d rows, killed %d ms into the load with %d"
              + " done; retries used"
              + " (retries=count) %s; kill -> \"Kiln ready\" %d ms (the server says ready in %s"
              + " ms); kill -> first successful call %s ms; %d problems%n",
          CALLS,
          ROWS,
          TimeUnit.NANOSECONDS.toMillis(killAt - loadStart),
          doneAtKill,
          retries,
          TimeUnit.NANOSECONDS.toMillis(readyAt - killAt),
          m.find() ? m.group(1) : "?",
          firstOkAfterKill == Long.MAX_VALUE
              ? "never"
              : Long.toString(TimeUnit.NANOSECONDS.toMillis(firstOkAfterKill - killAt)),
          problems.size());
      List<Line> restartLog = new ArrayList<>(second.seen());
      second.log().drainTo(restartLog);
      for (Line l : restartLog) {
        System.out.printf(
            "  +%6d ms  %s%n", TimeUnit.NANOSECONDS.toMillis(l.nanos() - killAt), l.text());
      }
      assertThat(doneAtKill)
          .as("mini-batches done when the server was killed (the rest were in flight)")
          .isLessThan(CALLS / 2);
      assertThat(problems).as("mini-batches that failed, were lost or came back wrong").isEmpty();
    } finally {
      first.process().destroyForcibly();
      stop(second);
    }
  }
}
