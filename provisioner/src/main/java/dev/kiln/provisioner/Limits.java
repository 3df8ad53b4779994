package dev.kiln.provisioner;

/**
 * Resource limits of one sandbox.
 *
 * @param memoryBytes memory limit of the whole sandbox (all its processes and its in-memory files),
 *     in bytes
 * @param cpus CPU quota in cores (e.g. 2.0); the sandbox reports this many CPUs rounded up (runsc
 *     --cpu-num-from-quota: at least 2, at most the host's)
 * @param writableBytes size of the sandbox's scratch file systems together ({@code /tmp} gets half,
 *     {@code /dev/shm} a quarter, {@code /var/tmp} and {@code /run/lock} an eighth each): a write
 *     beyond fails with ENOSPC in that process. They are memory-backed, so they count toward {@code
 *     memoryBytes} and must stay below it
 * @param maxProcesses tasks (processes and threads) the sandbox's user may have at once
 *     (RLIMIT_NPROC, enforced by gVisor): a fork or thread start beyond fails with EAGAIN in that
 *     process instead of the sandbox running out of memory
 * @param gpus GPUs of the sandbox ({@code nvidia.com/gpu}); only sandbox pods on GPU nodes have any
 */
public record Limits(
    long memoryBytes, double cpus, long writableBytes, int maxProcesses, int gpus) {
  /**
   * Memory allowed per task. Threads cost the sandbox little, but a forked Python process costs it
   * 4.5-7 MiB under runsc's ptrace platform (its stub process, page tables and the pages the child
   * copies on write), more when its parent is larger. Measured in a 512 MiB sandbox: a fork bomb of
   * 64 processes peaked at 328 MiB, one process forking 62 children at 437 MiB and the sandbox was
   * killed when they all exited at once, 128 processes killed it every time. A quarter of the
   * memory for processes at the measured cost leaves the rest for the runners and the scratch
   * space.
   */
  static final long MEMORY_PER_TASK = 16L << 20;

  /** A floor for tiny sandboxes: init, a few runners and their threads. */
  static final int MIN_PROCESSES = 8;

  public Limits {
    if (memoryBytes < 16L << 20) {
      throw new IllegalArgumentException(
          "memory limit must be at least 16 MiB, got " + memoryBytes);
    }
    if (!(cpus > 0)) {
      throw new IllegalArgumentException("cpus must be positive, got " + cpus);
    }
    if (writableBytes < 1L << 20 || writableBytes >= memoryBytes) {
      throw new IllegalArgumentException(
          "writable space must be at least 1 MiB and below the memory limit ("
              + memoryBytes
              + "), got "
              + writableBytes);
    }
    if (maxProcesses < 2) {
      throw new IllegalArgumentException(
          "a sandbox needs at least 2 processes (init and one more), got " + maxProcesses);
    }
    if (gpus < 0) {
      throw new IllegalArgumentException("gpus must not be negative, got " + gpus);
    }
  }

  /** Limits without GPUs. */
  public Limits(long memoryBytes, double cpus, long writableBytes, int maxProcesses) {
    this(memoryBytes, cpus, writableBytes, maxProcesses, 0);
  }

  /** The same limits with {@code gpus} GPUs. */
  public Limits withGpus(int gpus) {
    return new Limits(memoryBytes, cpus, writableBytes, maxProcesses, gpus);
  }

  /**
   * Limits with the writable space and process limit derived from the memory limit ({@link
   * #defaultWritableBytes}, {@link #defaultMaxProcesses}).
   */
  public Limits(long memoryBytes, double cpus) {
    this(memoryBytes, cpus, defaultWritableBytes(memoryBytes), defaultMaxProcesses(memoryBytes));
  }

  /**
   * A quarter of the memory limit, whole MiB: enough for the temporary files of ordinary UDFs,
   * while the rest keeps room for the runners' own memory.
   */
  public static long defaultWritableBytes(long memoryBytes) {
    return Math.max(1L << 20, (memoryBytes / 4) & ~((1L << 20) - 1));
  }

  /** One task per {@link #MEMORY_PER_TASK} of the memory limit, at least {@link #MIN_PROCESSES}. */
  public static int defaultMaxProcesses(long memoryBytes) {
    return (int)
        Math.max(MIN_PROCESSES, Math.min(Integer.MAX_VALUE, memoryBytes / MEMORY_PER_TASK));
  }

  /** Memory limit in MiB, for messages. */
  public long memoryMiB() {
    return memoryBytes >> 20;
  }
}
