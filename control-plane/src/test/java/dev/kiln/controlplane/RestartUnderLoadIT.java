package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
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
  private static final int CALLS = 256;
  private static final int THREADS = 64;
  private static final int ROWS = 4096;
  private static final Duration START_WAIT = Duration.ofSeconds(60);

  @TempDir Path dir;

  private ServeProcess startServe(String name, ServeProcess.Ports ports, Path data)
      throws Exception {
    return ServeProcess.start(
        Path.of("target", "kiln.jar"),
        dir.resolve(name + ".log"),
        ports,
        data,
        KilnTestSupport.baseImage(),
        START_WAIT);
  }

  private static void stop(ServeProcess s) throws InterruptedException {
    if (s != null) {
      s.stop();
    }
  }

  @Test
  void everyMiniBatchCompletesAcrossAKillAndRestart() throws Exception {
    ServeProcess.Ports ports = ServeProcess.Ports.free();
    Path data = dir.resolve("data");
    ServeProcess first = startServe("first", ports, data);
    ServeProcess second = null;
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
      try (DatabendClient api = KilnTestSupport.client(ports.grpc())) {
        // The first apply builds the image and starts the sandbox: more than Databend's 5 s.
        resource =
            api.apply(
                "t1",
                spec("add", AddLoad.TYPES, "BIGINT NULL", AddLoad.CODE),
                List.of(),
                Duration.ofSeconds(60));
      }
      DatabendCalls calls =
          new DatabendCalls(
              allocator,
              new DatabendCalls.Target(
                  resource.endpoint(), resource.headers(), "t1", "add", "add", "restart-it"));
      try (VectorSchemaRoot warm = AddLoad.input(allocator, 0, 16);
          DatabendCalls.Outcome o = calls.exchange(warm)) {
        assertThat(o.result())
            .as("the warm-up call: %s", o.failures())
            .isEqualTo(DatabendCalls.Result.OK);
        assertThat(AddLoad.wrongRows(o, 0, 16)).isZero();
      }

      CountDownLatch firstDone = new CountDownLatch(1);
      long loadStart = System.nanoTime();
      List<Future<?>> done = new ArrayList<>();
      for (int i = 0; i < CALLS; i++) {
        int n = i;
        done.add(
            pool.submit(
                () -> {
                  try (VectorSchemaRoot in = AddLoad.input(allocator, n, ROWS)) {
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
      second = startServe("second", ports, data);
      for (Future<?> f : done) {
        f.get(60, TimeUnit.SECONDS);
      }

      Map<Integer, Integer> retries = new TreeMap<>();
      List<String> onTheWire = new ArrayList<>();
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
        if (o.result() == DatabendCalls.Result.LOST
            && o.failures().getLast().headersArrived()
            && o.failures().getLast().atNanos() >= killAt) {
          // Its result was on the wire when the server died: response headers out, trailers not.
          // Databend gives such a call up; the window is the transfer of one result.
          onTheWire.add("mini-batch " + i + ": " + o.failures().getLast());
        } else if (o.result() != DatabendCalls.Result.OK) {
          problems.add("mini-batch " + i + " " + o.result() + ": " + o.failures().getLast());
        } else {
          int wrong = AddLoad.wrongRows(o, i, ROWS);
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
              + " succeeded after failing across the restart %s ms; %d problems, %d lost on the"
              + " wire%n",
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
          problems.size(),
          onTheWire.size());
      System.out.println("the restarted server's log, from the kill:");
      for (String line : Files.readAllLines(second.output(), StandardCharsets.UTF_8)) {
        long at = ServeProcess.stampMillis(line, killMillis);
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
      onTheWire.forEach(p -> System.out.println("  lost on the wire at the kill: " + p));
      assertThat(doneAtKill)
          .as("mini-batches done when the server was killed (the rest were in flight)")
          .isLessThan(CALLS / 2);
      assertThat(problems).as("mini-batches that failed, were lost or came back wrong").isEmpty();
      // Before responses started with their result, every call in flight at the kill was lost.
      assertThat(onTheWire)
          .as("calls whose result was being sent at the kill (Databend does not retry them)")
          .hasSizeLessThanOrEqualTo(CALLS / 64);
    } finally {
      stop(first);
      stop(second);
    }
  }
}
