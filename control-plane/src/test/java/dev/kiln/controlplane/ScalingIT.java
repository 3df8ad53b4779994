package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.controlplane.proto.resource.CreateWorkerRequest;
import dev.kiln.definition.QueryScripts;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.apache.arrow.memory.BufferAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * A busy worker's UDF gets more sandboxes (real gVisor): calls that queue on its one runner make
 * Kiln add a sandbox up to max_cluster_count, the calls spread over both, and the added one stops
 * after --scale-down-after without calls; min_cluster_count sandboxes start with the UDF.
 */
class ScalingIT {
  @TempDir Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  private static final String SLOW =
      "import time\n\ndef slow(x):\n    time.sleep(0.2)\n    return x + 1\n";

  static void worker(DatabendClient api, String name, Map<String, String> options) {
    api.workers("acme", Duration.ofSeconds(5))
        .createWorker(
            CreateWorkerRequest.newBuilder()
                .setTenantId("acme")
                .setName(name)
                .putAllOptions(options)
                .build());
  }

  static DatabendClient.Resource udf(DatabendClient api, String name) {
    return udf(api, name, SLOW);
  }

  /** The worker's UDF {@code slow(x)} with {@code code}. */
  static DatabendClient.Resource udf(DatabendClient api, String name, String code) {
    String script =
        QueryScripts.udf(code, "slow").inputs("BIGINT NULL").result("BIGINT NULL").render();
    return api.createWorker("acme", name, script, Duration.ofSeconds(5));
  }

  private long call(DatabendClient.Resource r, long x) throws Exception {
    return call(allocator, r, x);
  }

  /** The slow UDF of {@code x}: {@code x + 1}. */
  static long call(BufferAllocator allocator, DatabendClient.Resource r, long x) throws Exception {
    return ((Number)
            KilnTestSupport.call(
                    allocator, r, "acme", "slow", List.of("BIGINT NULL"), "[[" + x + "]]")
                .get(0)
                .get(0))
        .longValue();
  }

  /**
   * Calls the worker's slow UDF {@code inFlight} at a time (each call on a connection of its own,
   * as Databend's) until it has {@code sandboxes}; returns every call, each with its result minus
   * its argument (1 when right). {@code whenReached} runs at the moment the count is first seen
   * reached (an added sandbox may go again once idle, before the calls under way end).
   */
  static List<CompletableFuture<Long>> loadUntil(
      RunningKiln kiln,
      String worker,
      int sandboxes,
      BufferAllocator allocator,
      DatabendClient.Resource r,
      ExecutorService callers,
      int inFlight,
      Duration timeout,
      Runnable whenReached) {
    long deadline = System.nanoTime() + timeout.toNanos();
    List<CompletableFuture<Long>> calls = new ArrayList<>();
    int n = 0;
    boolean[] reached = {false};
    Runnable look =
        () -> {
          if (!reached[0] && sandboxesOf(kiln, worker) >= sandboxes) {
            reached[0] = true;
            whenReached.run();
          }
        };
    while (!reached[0]) {
      assertThat(System.nanoTime() - deadline).as(sandboxes + " sandboxes in time").isNegative();
      int first = calls.size();
      for (int i = 0; i < inFlight; i++) {
        long x = n++;
        calls.add(
            CompletableFuture.supplyAsync(
                () -> {
                  try {
                    return call(allocator, r, x) - x;
                  } catch (Exception e) {
                    throw new IllegalStateException(e);
                  }
                },
                callers));
      }
      // The count is looked at while the calls run too.
      CompletableFuture<Void> round =
          CompletableFuture.allOf(
              calls.subList(first, calls.size()).toArray(CompletableFuture[]::new));
      while (!round.isDone()) {
        look.run();
        try {
          round.get(50, TimeUnit.MILLISECONDS);
        } catch (TimeoutException | ExecutionException e) {
          // still running, or a call failed: the caller looks at every call's result
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
          throw new IllegalStateException(e);
        }
      }
      look.run();
    }
    return calls;
  }

  static int sandboxesOf(RunningKiln kiln, String worker) {
    return kiln.server().registryForTests().all().stream()
        .filter(r -> worker.equals(r.owner))
        .mapToInt(UdfResource::sandboxCount)
        .sum();
  }

  @Test
  void queuedCallsAddASandboxUpToTheMaximumAndItStopsWhenIdle() throws Exception {
    try (RunningKiln kiln =
            RunningKiln.start(dir.resolve("data"), b -> b.set("scale-down-after", "2s"));
        ExecutorService callers = Executors.newFixedThreadPool(6)) {
      worker(kiln.api(), "busy", Map.of("max_cluster_count", "2"));
      DatabendClient.Resource r = udf(kiln.api(), "busy");
      assertThat(call(r, 1)).isEqualTo(2);
      assertThat(sandboxesOf(kiln, "busy")).isEqualTo(1);

      // Six callers at once on one runner: calls queue until a second sandbox takes some.
      List<CompletableFuture<Long>> calls =
          loadUntil(kiln, "busy", 2, allocator, r, callers, 6, Duration.ofSeconds(60), () -> {});
      assertThat(calls).allSatisfy(c -> assertThat(c.join()).isEqualTo(1));
      assertThat(sandboxesOf(kiln, "busy")).as("never above max_cluster_count").isEqualTo(2);
      assertThat(
              KilnTestSupport.JSON
                  .readTree(
                      KilnTestSupport.cli(
                          "ps",
                          "--json",
                          "--admin",
                          "http://127.0.0.1:" + kiln.server().adminPort()))
                  .get(0)
                  .path("sandboxes")
                  .asInt())
          .isEqualTo(2);

      KilnTestSupport.eventually(
          "the added sandbox stops when idle",
          Duration.ofSeconds(30),
          () -> sandboxesOf(kiln, "busy") == 1);
      assertThat(call(r, 41)).isEqualTo(42);
    }
  }

  @Test
  void minClusterCountSandboxesStartWithTheUdf() throws Exception {
    try (RunningKiln kiln =
        RunningKiln.start(dir.resolve("data"), b -> b.set("scale-down-after", "1s"))) {
      worker(kiln.api(), "steady", Map.of("min_cluster_count", "2", "max_cluster_count", "2"));
      DatabendClient.Resource r = udf(kiln.api(), "steady");
      assertThat(call(r, 1)).isEqualTo(2);
      KilnTestSupport.eventually(
          "min_cluster_count sandboxes",
          Duration.ofSeconds(30),
          () -> sandboxesOf(kiln, "steady") == 2);
      assertThat(kiln.server().meters().get("kiln.sandboxes.running").gauge().value()).isEqualTo(2);
      // Idle, but kept: never below the minimum.
      long until = System.nanoTime() + Duration.ofSeconds(3).toNanos();
      while (System.nanoTime() < until) {
        assertThat(sandboxesOf(kiln, "steady")).isEqualTo(2);
        java.util.concurrent.locks.LockSupport.parkNanos(100_000_000);
      }
    }
  }
}
