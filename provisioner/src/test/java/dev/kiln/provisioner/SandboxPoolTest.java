package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
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
  private static final SandboxImage IMAGE =
      new SandboxImage(
          List.of(
              new SandboxImage.Layer(
                  "sha256:" + "0".repeat(64),
                  "application/vnd.oci.image.layer.v1.tar",
                  java.nio.file.Path.of("never-read.tar"))),
          List.of("init"),
          List.of(),
          "/");

  /** Sandboxes that start at once and stop when closed. */
  private static final class Memory implements Provisioner {
    final List<Sandbox> started = new CopyOnWriteArrayList<>();
    final AtomicInteger ids = new AtomicInteger();

    @Override
    public Sandbox start(SandboxSpec spec) {
      Sandbox s = new FakeSandbox("s" + ids.incrementAndGet(), spec);
      started.add(s);
      return s;
    }

    @Override
    public List<Sandbox> sandboxes() {
      return started.stream().filter(Sandbox::isRunning).toList();
    }

    @Override
    public void close() {
      started.forEach(Sandbox::close);
    }
  }

  private record FakeSandbox(String id, SandboxSpec spec, CompletableFuture<Void> stopped)
      implements Sandbox {
    FakeSandbox(String id, SandboxSpec spec) {
      this(id, spec, new CompletableFuture<>());
    }

    @Override
    public SandboxProcess init() {
      return new FakeProcess(stopped);
    }

    @Override
    public SandboxProcess exec(List<String> argv, List<String> env) {
      return new FakeProcess(stopped);
    }

    @Override
    public boolean isRunning() {
      return !stopped.isDone();
    }

    @Override
    public void close() {
      stopped.complete(null);
    }
  }

  private record FakeProcess(CompletableFuture<Void> sandboxStopped) implements SandboxProcess {
    @Override
    public OutputStream stdin() {
      return new ByteArrayOutputStream();
    }

    @Override
    public InputStream stdout() {
      return new ByteArrayInputStream(new byte[0]);
    }

    @Override
    public InputStream stderr() {
      return new ByteArrayInputStream(new byte[0]);
    }

    @Override
    public boolean isAlive() {
      return !sandboxStopped.isDone();
    }

    @Override
    public CompletableFuture<Integer> exited() {
      return sandboxStopped.thenApply(v -> 0);
    }

    @Override
    public void kill(Duration timeout) {}

    @Override
    public void close() {}
  }

  private static void eventually(String what, BooleanSupplier condition) {
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
    Memory provisioner = new Memory();
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
    Memory provisioner = new Memory();
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
}
