package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * The node's sandbox budget with real gVisor sandboxes: a new UDF makes room by stopping the least
 * recently used idle one (which its next call starts again), and when every sandbox is busy the
 * request is refused with RESOURCE_EXHAUSTED naming the budget — never a stopped running call.
 */
class NodeBudgetIT {
  @TempDir Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  private Object call(DatabendClient.Resource r, String handler, long x) throws Exception {
    return KilnTestSupport.call(
            allocator, r, "acme", handler, List.of("BIGINT NULL"), "[[" + x + "]]")
        .get(0)
        .get(0);
  }

  private static double running(RunningKiln kiln) {
    return kiln.server().meters().get("kiln.sandboxes.running").gauge().value();
  }

  @Test
  void aNewUdfStopsTheLeastRecentlyUsedIdleOneAndThatOneComesBackOnItsNextCall() throws Exception {
    try (RunningKiln kiln =
        RunningKiln.start(dir.resolve("data"), b -> b.set("max-sandboxes", "2"))) {
      DatabendClient.Resource one = kiln.api().apply("acme", KilnTestSupport.plus(1));
      assertThat(call(one, "plus1", 1)).isEqualTo(2L);
      DatabendClient.Resource two = kiln.api().apply("acme", KilnTestSupport.plus(2));
      assertThat(call(two, "plus2", 1)).isEqualTo(3L);
      DatabendClient.Resource three = kiln.api().apply("acme", KilnTestSupport.plus(3));
      assertThat(call(three, "plus3", 1)).isEqualTo(4L);
      assertThat(running(kiln)).isEqualTo(2);
      assertThat(kiln.server().registryForTests().all())
          .extracting(r -> r.definition.handler())
          .as("plus1 was the least recently used")
          .containsExactlyInAnyOrder("plus2", "plus3");

      assertThat(call(one, "plus1", 10)).isEqualTo(11L);
      assertThat(running(kiln)).isEqualTo(2);
      assertThat(kiln.server().registryForTests().all())
          .extracting(r -> r.definition.handler())
          .containsExactlyInAnyOrder("plus1", "plus3");
      assertThat(
              kiln.server()
                  .meters()
                  .get("kiln.sandbox.stops")
                  .tag("reason", "budget")
                  .counter()
                  .count())
          .isEqualTo(2);
    }
  }

  @Test
  void whenEverySandboxIsBusyANewUdfIsRefusedAndTheRunningCallFinishes() throws Exception {
    try (RunningKiln kiln =
        RunningKiln.start(dir.resolve("data"), b -> b.set("max-sandboxes", "1"))) {
      String slow =
          KilnTestSupport.spec(
              "slow",
              List.of("BIGINT NULL"),
              "BIGINT NULL",
              "import time\n\ndef slow(x):\n    time.sleep(x)\n    return x\n");
      DatabendClient.Resource r = kiln.api().apply("acme", slow);
      assertThat(call(r, "slow", 0)).isEqualTo(0L);
      CompletableFuture<Object> busy =
          CompletableFuture.supplyAsync(
              () -> {
                try {
                  return call(r, "slow", 4);
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      KilnTestSupport.eventually(
          "the call is being computed",
          Duration.ofSeconds(10),
          () -> kiln.server().registryForTests().all().iterator().next().isBusy());

      String admin = "http://127.0.0.1:" + kiln.server().adminPort();
      var ps = KilnTestSupport.JSON.readTree(KilnTestSupport.cli("ps", "--json", "--admin", admin));
      assertThat(ps).hasSize(1);
      assertThat(ps.get(0).path("state").asText()).isEqualTo("busy");
      assertThat(ps.get(0).path("handler").asText()).isEqualTo("slow");
      assertThat(ps.get(0).path("memory_limit_bytes").asLong()).isEqualTo(512L << 20);
      assertThat(ps.get(0).path("memory_bytes").asLong())
          .as("memory in use, from the sandbox's cgroup")
          .isBetween(1L << 20, 512L << 20);
      assertThat(ps.get(0).path("calls").asLong()).isEqualTo(2);
      assertThat(KilnTestSupport.cli("ps", "--admin", admin))
          .contains("TENANT")
          .containsPattern("acme +slow +[0-9a-f]{12} +busy ");

      assertThatThrownBy(() -> kiln.api().apply("acme", KilnTestSupport.plus(1)))
          .isInstanceOfSatisfying(
              StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED))
          .hasMessageContaining("no room for another sandbox on this Kiln node")
          .hasMessageContaining("(--max-sandboxes=1)")
          .hasMessageContaining("[KILN-304]");
      assertThat(busy.get()).as("the running call was not cut").isEqualTo(4L);
    }
  }
}
