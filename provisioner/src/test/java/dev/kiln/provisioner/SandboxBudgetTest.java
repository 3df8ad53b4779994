package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;

/** The node budget: room by count and by memory, idle sandboxes stopped first, a clear refusal. */
class SandboxBudgetTest {
  private static final long MIB = 1L << 20;
  private static final Limits SMALL = new Limits(256 * MIB, 1.0);

  /** Idle sandboxes the fake control plane can stop, oldest first; each gives its room back. */
  private final Deque<Limits> idle = new ArrayDeque<>();

  private SandboxBudget budget(int maxSandboxes, long maxMemory) {
    SandboxBudget b = new SandboxBudget(maxSandboxes, maxMemory, 64 * MIB);
    b.reclaimer(
        () -> {
          Limits l = idle.pollFirst();
          if (l == null) {
            return Optional.empty();
          }
          CompletableFuture<Void> gone = new CompletableFuture<>();
          // The sandbox stops on another thread, a moment later, and gives its room back then.
          CompletableFuture.runAsync(
              () -> {
                b.release(l);
                gone.complete(null);
              });
          return Optional.of(gone);
        });
    return b;
  }

  @Test
  void aSandboxCountsItsLimitAndGvisorsOwnMemory() throws Exception {
    SandboxBudget b = budget(0, 1024 * MIB);
    b.reserve(SMALL);
    assertThat(b.usage()).isEqualTo(new SandboxBudget.Usage(1, 320 * MIB));
    b.release(SMALL);
    assertThat(b.usage()).isEqualTo(new SandboxBudget.Usage(0, 0));
  }

  @Test
  void whenFullTheLeastRecentlyUsedIdleSandboxesStopFirst() throws Exception {
    SandboxBudget b = budget(2, 4096 * MIB);
    b.reserve(SMALL);
    b.reserve(SMALL);
    idle.add(SMALL);
    idle.add(SMALL);
    b.reserve(SMALL);
    assertThat(idle).as("one stopped, the other kept").hasSize(1);
    assertThat(b.usage().sandboxes()).isEqualTo(2);
  }

  @Test
  void memoryLimitsToo() throws Exception {
    SandboxBudget b = budget(0, 700 * MIB); // two small ones (2 x 320 MiB), not three
    b.reserve(SMALL);
    b.reserve(SMALL);
    idle.add(SMALL);
    b.reserve(SMALL);
    assertThat(b.usage()).isEqualTo(new SandboxBudget.Usage(2, 640 * MIB));
  }

  @Test
  void whenEverySandboxIsBusyTheStartIsRefusedNamingTheBudgetAndItsFlags() throws Exception {
    SandboxBudget b = budget(2, 4096 * MIB);
    b.reserve(SMALL);
    b.reserve(SMALL);
    assertThatThrownBy(() -> b.reserve(SMALL))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.NODE_BUDGET_EXHAUSTED))
        .hasMessage(
            "no room for another sandbox on this Kiln node: 2 sandbox(es) hold 640 MiB of"
                + " --max-sandbox-memory=4096MiB (--max-sandboxes=2) and every one is busy or"
                + " starting; run the query again when calls have finished, or raise the budget");
    assertThat(b.usage().sandboxes()).as("nothing taken by the refused start").isEqualTo(2);
  }

  @Test
  void aSandboxLargerThanTheWholeBudgetIsRefusedAtOnce() {
    SandboxBudget b = budget(0, 512 * MIB);
    assertThatThrownBy(() -> b.reserve(new Limits(1024 * MIB, 1.0)))
        .hasMessageContaining("larger than the node's whole sandbox budget")
        .hasMessageContaining("--max-sandbox-memory=512MiB");
  }
}
