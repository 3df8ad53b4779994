package dev.kiln.provisioner;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The node's budget for UDF sandboxes: how many may run at once and how much memory they may hold
 * together. A sandbox counts its memory limit plus what gVisor itself holds beside it (the runsc
 * sentry, gofer and their page tables, {@link #overheadBytes}), so a full budget never means a host
 * out of memory.
 *
 * <p>A start that does not fit first asks the {@link Reclaimer} to stop idle sandboxes, least
 * recently used first, and waits for each to be gone; when none is idle — every sandbox is busy or
 * starting — it fails at once with {@link ErrorCode#NODE_BUDGET_EXHAUSTED}, naming the budget and
 * the flag that sets it. Nothing running is ever stopped to make room.
 */
public final class SandboxBudget {
  private static final Logger log = LoggerFactory.getLogger(SandboxBudget.class);

  /** How long a start waits for a reclaimed sandbox to be gone before asking for another. */
  private static final long RECLAIM_WAIT_SECONDS = 30;

  /** Stops idle sandboxes to make room. */
  @FunctionalInterface
  public interface Reclaimer {
    /**
     * Stops the least recently used idle sandbox; returns what completes when it is gone, or empty
     * when no sandbox is idle.
     */
    Optional<CompletableFuture<Void>> reclaimOne();
  }

  /** What the budget holds now. */
  public record Usage(int sandboxes, long memoryBytes) {}

  private final int maxSandboxes;
  private final long maxMemoryBytes;
  private final long overheadBytes;
  private volatile Reclaimer reclaimer = Optional::empty;
  private int sandboxes;
  private long memoryBytes;

  /**
   * @param maxSandboxes sandboxes that may run at once (0: no limit by count)
   * @param maxMemoryBytes memory all sandboxes may hold together, limits plus overhead
   * @param overheadBytes what one sandbox holds beside its memory limit
   */
  public SandboxBudget(int maxSandboxes, long maxMemoryBytes, long overheadBytes) {
    if (maxSandboxes < 0 || maxMemoryBytes <= 0 || overheadBytes < 0) {
      throw new IllegalArgumentException(
          "a sandbox budget needs max sandboxes >= 0, memory > 0 and overhead >= 0");
    }
    this.maxSandboxes = maxSandboxes;
    this.maxMemoryBytes = maxMemoryBytes;
    this.overheadBytes = overheadBytes;
  }

  /** Who stops idle sandboxes when a start does not fit (set once, by the control plane). */
  public void reclaimer(Reclaimer r) {
    this.reclaimer = r;
  }

  public int maxSandboxes() {
    return maxSandboxes;
  }

  public long maxMemoryBytes() {
    return maxMemoryBytes;
  }

  /** What a sandbox with these limits counts against the budget. */
  public long cost(Limits limits) {
    return limits.memoryBytes() + overheadBytes;
  }

  public synchronized Usage usage() {
    return new Usage(sandboxes, memoryBytes);
  }

  /**
   * Takes room for a sandbox with {@code limits}, stopping idle sandboxes first when there is none.
   * The caller gives it back with {@link #release} once that sandbox has stopped (or did not
   * start).
   *
   * @throws KilnException {@link ErrorCode#NODE_BUDGET_EXHAUSTED} when there is no room and no idle
   *     sandbox to stop, or the sandbox is larger than the whole budget
   */
  public void reserve(Limits limits) throws KilnException, InterruptedException {
    long cost = cost(limits);
    if (cost > maxMemoryBytes) {
      throw new KilnException(
          ErrorCode.NODE_BUDGET_EXHAUSTED,
          "a sandbox of "
              + limits.memoryMiB()
              + " MiB (plus "
              + (overheadBytes >> 20)
              + " MiB for gVisor) is larger than the node's whole sandbox budget,"
              + " --max-sandbox-memory="
              + (maxMemoryBytes >> 20)
              + "MiB; give the worker a smaller size or raise --max-sandbox-memory");
    }
    int reclaimed = 0;
    while (true) {
      synchronized (this) {
        if (fits(cost)) {
          sandboxes++;
          memoryBytes += cost;
          if (reclaimed > 0) {
            log.info("stopped {} idle sandbox(es) to make room for a new one", reclaimed);
          }
          return;
        }
      }
      Optional<CompletableFuture<Void>> gone = reclaimer.reclaimOne();
      if (gone.isEmpty()) {
        throw exhausted();
      }
      reclaimed++;
      try {
        gone.get().get(RECLAIM_WAIT_SECONDS, TimeUnit.SECONDS);
      } catch (ExecutionException | TimeoutException e) {
        log.warn("an idle sandbox stopped for room did not stop cleanly: {}", e.toString());
      }
    }
  }

  /**
   * Takes room for a sandbox with {@code limits} only when there is some now, stopping nothing: for
   * sandboxes started ahead of need, which must never push out one in use.
   */
  public synchronized boolean tryReserve(Limits limits) {
    long cost = cost(limits);
    if (!fits(cost)) {
      return false;
    }
    sandboxes++;
    memoryBytes += cost;
    return true;
  }

  /** Gives back the room of a sandbox with {@code limits}. */
  public synchronized void release(Limits limits) {
    sandboxes--;
    memoryBytes -= cost(limits);
  }

  private boolean fits(long cost) {
    return (maxSandboxes == 0 || sandboxes < maxSandboxes) && memoryBytes + cost <= maxMemoryBytes;
  }

  private synchronized KilnException exhausted() {
    return new KilnException(
        ErrorCode.NODE_BUDGET_EXHAUSTED,
        "no room for another sandbox on this Kiln node: "
            + sandboxes
            + " sandbox(es) hold "
            + (memoryBytes >> 20)
            + " MiB of --max-sandbox-memory="
            + (maxMemoryBytes >> 20)
            + "MiB"
            + (maxSandboxes == 0 ? "" : " (--max-sandboxes=" + maxSandboxes + ")")
            + " and every one is busy or starting; run the query again when calls have"
            + " finished, or raise the budget");
  }
}
