package dev.kiln.provisioner;

import static dev.kiln.provisioner.SandboxPoolTest.eventually;
import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * The zygotes' bookkeeping, on an in-memory provisioner (the control plane's ZygotesIT runs them on
 * real runsc): one ready sandbox per package set offered, handed out once and refilled, the least
 * recently used set dropped beyond the limit, room given back first when a start needs it.
 */
class ZygotesTest {
  private static final Limits SMALL = new Limits(256L << 20, 1.0);
  private static final Limits LARGE = new Limits(1024L << 20, 2.0);

  private static SandboxPool.Recipe recipe(String name, AtomicInteger asked) {
    asked.incrementAndGet();
    return new SandboxPool.Recipe(
        new SandboxSpec(name, MemoryProvisioner.IMAGE, SMALL, List.of()),
        List.of("run"),
        List.of("KILN_PRELOAD=" + name),
        2);
  }

  @Test
  void keepsOneReadySandboxPerSetAndHandsItOutOnce() {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    AtomicInteger asked = new AtomicInteger();
    try (Zygotes zygotes = new Zygotes(new PlaceSandbox(provisioner), p -> {}, 2)) {
      assertThat(zygotes.take("numpy", SMALL)).as("nothing before an offer").isEmpty();
      zygotes.offer("numpy", "numpy label", () -> recipe("numpy", asked));
      zygotes.offer("numpy", "numpy label", () -> recipe("numpy", asked));
      eventually("one ready", () -> zygotes.stats().ready() == 1);
      assertThat(zygotes.stats().keys()).as("offered twice, kept once").isEqualTo(1);
      assertThat(zygotes.ready())
          .singleElement()
          .extracting(Zygotes.Ready::label)
          .isEqualTo("numpy label");

      assertThat(zygotes.take("numpy", LARGE)).as("another size misses").isEmpty();
      assertThat(zygotes.take("pandas", SMALL)).as("another set misses").isEmpty();
      SandboxPool.Warm a = zygotes.take("numpy", SMALL).orElseThrow();
      assertThat(a.sandbox().spec().name()).isEqualTo("numpy");
      assertThat(a.processes()).hasSize(2);
      eventually("refilled", () -> zygotes.stats().ready() == 1);
      SandboxPool.Warm b = zygotes.take("numpy", SMALL).orElseThrow();
      assertThat(b.sandbox()).as("never the same sandbox twice").isNotSameAs(a.sandbox());
      assertThat(zygotes.stats().hits()).isEqualTo(2);
      assertThat(zygotes.stats().misses()).isEqualTo(3);
      eventually("refilled again", () -> zygotes.stats().ready() == 1);
      assertThat(asked.get())
          .as("the recipe is asked for at each refill (it may have got better), by one pool")
          .isEqualTo(provisioner.started.size())
          .isEqualTo(3);
    }
  }

  @Test
  void dropsTheLeastRecentlyUsedSetBeyondTheLimit() {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    AtomicInteger asked = new AtomicInteger();
    try (Zygotes zygotes = new Zygotes(new PlaceSandbox(provisioner), p -> {}, 2)) {
      zygotes.offer("a", "a label", () -> recipe("a", asked));
      zygotes.offer("b", "b label", () -> recipe("b", asked));
      eventually("two ready", () -> zygotes.stats().ready() == 2);
      zygotes.take("a", SMALL).orElseThrow(); // a is now the most recently used
      zygotes.offer("c", "c label", () -> recipe("c", asked));
      eventually(
          "b dropped and stopped, a and c ready",
          () ->
              zygotes.stats().keys() == 2
                  && zygotes.stats().ready() == 2
                  && provisioner.sandboxes().stream().noneMatch(s -> s.spec().name().equals("b")));
      assertThat(zygotes.take("b", SMALL)).isEmpty();
      assertThat(zygotes.take("c", SMALL)).isPresent();
    }
  }

  @Test
  void givesItsRoomBackFirst() throws Exception {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    SandboxBudget budget = new SandboxBudget(1, 8L << 30, 0);
    try (Zygotes zygotes = new Zygotes(new PlaceSandbox(provisioner, budget), p -> {}, 2)) {
      zygotes.offer("numpy", "numpy label", () -> recipe("numpy", new AtomicInteger()));
      eventually("one ready", () -> zygotes.stats().ready() == 1);
      budget.reclaimer(zygotes::discardOne);
      Sandbox udf =
          new PlaceSandbox(provisioner, budget)
              .place(new SandboxSpec("udf", MemoryProvisioner.IMAGE, SMALL, List.of()));
      assertThat(udf.isRunning()).isTrue();
      assertThat(zygotes.stats().ready()).as("the zygote made room").isZero();
      udf.close();
      eventually("refilled once there is room", () -> zygotes.stats().ready() == 1);
    }
  }
}
