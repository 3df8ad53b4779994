package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

/**
 * The warm pool's bookkeeping, on an in-memory provisioner (no gVisor here; the control plane's
 * WarmPoolIT runs the pool on real runsc): refills up to its size, hands a sandbox out once, misses
 * on another size, takes budget room only when there is some and gives it back first.
 */
class SandboxPoolTest {
  private static final Limits SMALL = new Limits(256L << 20, 1.0);
  private static final Limits LARGE = new Limits(1024L << 20, 2.0);
  private static final SandboxImage IMAGE = MemoryProvisioner.IMAGE;

  static void eventually(String what, BooleanSupplier condition) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!condition.getAsBoolean()) {
      assertThat(System.nanoTime()).as(what).isLessThan(deadline);
      java.util.concurrent.locks.LockSupport.parkNanos(1_000_000);
    }
  }

  private static SandboxPool pool(PlaceSandbox places, AtomicInteger warmed, int size) {
    return new SandboxPool(
        places,
        () ->
            new SandboxPool.Recipe(
                new SandboxSpec("warm", IMAGE, SMALL, List.of()), List.of("run"), List.of(), 2),
        p -> warmed.incrementAndGet(),
        size);
  }

  @Test
  void handsEachSandboxOutOnceAndRefills() {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    AtomicInteger warmed = new AtomicInteger();
    try (SandboxPool pool = pool(new PlaceSandbox(provisioner), warmed, 2)) {
      pool.start();
      eventually("two ready", () -> pool.stats().ready() == 2);
      assertThat(warmed.get()).as("every process warmed before it counts").isEqualTo(4);

      SandboxPool.Warm a = pool.take(SMALL).orElseThrow();
      SandboxPool.Warm b = pool.take(SMALL).orElseThrow();
      assertThat(a.sandbox()).isNotSameAs(b.sandbox());
      assertThat(a.processes()).hasSize(2);
      assertThat(pool.take(LARGE)).as("another size misses").isEmpty();
      eventually("refilled", () -> pool.stats().ready() == 2);
      assertThat(pool.stats().hits()).isEqualTo(2);
      assertThat(pool.stats().misses()).isEqualTo(1);
      assertThat(provisioner.started).hasSize(4);
      assertThat(a.sandbox().isRunning()).as("a taken sandbox is its owner's").isTrue();
    }
    assertThat(provisioner.sandboxes()).as("closing stops the ready ones only").hasSize(2);
  }

  @Test
  void takesBudgetRoomOnlyWhenThereIsSomeAndGivesItBackFirst() throws Exception {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    SandboxBudget budget = new SandboxBudget(1, 8L << 30, 0);
    try (SandboxPool pool = pool(new PlaceSandbox(provisioner, budget), new AtomicInteger(), 2)) {
      pool.start();
      eventually("one ready", () -> pool.stats().ready() == 1);
      assertThat(budget.usage().sandboxes()).isEqualTo(1);

      budget.reclaimer(pool::discardOne);
      Sandbox udf =
          new PlaceSandbox(provisioner, budget)
              .place(new SandboxSpec("udf", IMAGE, SMALL, List.of()));
      assertThat(udf.isRunning()).isTrue();
      assertThat(pool.stats().ready()).as("the warm one made room").isZero();
      assertThat(budget.usage().sandboxes()).isEqualTo(1);
      udf.close();
      eventually("refilled once there is room", () -> pool.stats().ready() == 1);
    }
  }

  @Test
  void refillsWaitForCallsToPauseAndRecycledSandboxesAreReplacedThen() {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    AtomicBoolean serving = new AtomicBoolean();
    try (SandboxPool pool = pool(new PlaceSandbox(provisioner), new AtomicInteger(), 1)) {
      pool.deferWhile(serving::get, Duration.ofHours(1));
      pool.start();
      eventually("one ready", () -> pool.stats().ready() == 1);
      Sandbox first = provisioner.started.get(0);

      serving.set(true);
      assertThat(pool.recycleOne()).isTrue();
      assertThat(pool.recycleOne()).as("none ready now").isFalse();
      eventually("the refill waits for the calls", () -> pool.stats().deferring());
      assertThat(pool.stats().ready()).isZero();
      assertThat(first.isRunning()).as("a recycled sandbox is stopped in a pause too").isTrue();
      assertThat(provisioner.started).hasSize(1);

      serving.set(false);
      eventually("refilled in the pause", () -> pool.stats().ready() == 1);
      assertThat(first.isRunning()).isFalse();
      assertThat(provisioner.started).hasSize(2);
      assertThat(pool.stats().deferred()).isEqualTo(1);
    }
  }

  @Test
  void aRefillGoesAheadWhenCallsNeverPause() {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    try (SandboxPool pool = pool(new PlaceSandbox(provisioner), new AtomicInteger(), 1)) {
      pool.deferWhile(() -> true, Duration.ofMillis(100));
      pool.start();
      eventually("ready after waiting at most 100 ms", () -> pool.stats().ready() == 1);
      assertThat(pool.stats().deferred()).isEqualTo(1);
      assertThat(pool.stats().deferring()).isFalse();
    }
  }

  @Test
  void makingRoomStopsARecycledSandboxFirst() throws Exception {
    MemoryProvisioner provisioner = new MemoryProvisioner();
    AtomicBoolean serving = new AtomicBoolean();
    try (SandboxPool pool = pool(new PlaceSandbox(provisioner), new AtomicInteger(), 2)) {
      pool.deferWhile(serving::get, Duration.ofHours(1));
      pool.start();
      eventually("two ready", () -> pool.stats().ready() == 2);
      serving.set(true);
      Sandbox oldest = provisioner.started.get(0);
      assertThat(pool.recycleOne()).isTrue();
      pool.discardOne().orElseThrow().get(10, TimeUnit.SECONDS);
      assertThat(oldest.isRunning()).as("the recycled one made the room").isFalse();
      assertThat(pool.stats().ready()).isEqualTo(1);
    }
  }
}
