package dev.kiln.controlplane;

import dev.kiln.provisioner.Limits;

/**
 * How big a UDF's sandbox is: its CPUs and memory, and how many runner processes share them.
 *
 * @param name the worker size it comes from ({@code small}, …), or {@code default} for the server's
 *     own settings
 * @param cpus CPU quota of the sandbox, in cores
 * @param memoryBytes memory of the sandbox's processes; its scratch space ({@link #limits}) comes
 *     on top
 * @param runners runner processes in the sandbox
 * @param gpus GPUs of the sandbox (a worker's {@code gpu} option; only sandbox pods have any)
 */
record Sizing(String name, double cpus, long memoryBytes, int runners, int gpus) {
  static final String DEFAULT = "default";

  Sizing {
    if (!(cpus > 0) || memoryBytes < 64L << 20 || runners < 1 || gpus < 0) {
      throw new IllegalArgumentException(
          "size "
              + name
              + " needs cpus > 0, at least 64 MiB and at least one runner; got "
              + cpus
              + ", "
              + (memoryBytes >> 20)
              + " MiB, "
              + runners);
    }
  }

  /** A size without GPUs. */
  Sizing(String name, double cpus, long memoryBytes, int runners) {
    this(name, cpus, memoryBytes, runners, 0);
  }

  /** The same size with {@code gpus} GPUs. */
  Sizing withGpus(int gpus) {
    return new Sizing(name, cpus, memoryBytes, runners, gpus);
  }

  /** The server's own sandbox settings, for UDFs whose worker names no size. */
  static Sizing of(KilnConfig config) {
    return new Sizing(
        DEFAULT,
        config.sandboxCpus(),
        config.sandboxMemoryBytes(),
        config.effectiveRunnersPerSandbox());
  }

  boolean isDefault() {
    return name.equals(DEFAULT);
  }

  /**
   * The sandbox's limits: its scratch space (/tmp and the like, {@link
   * Limits#defaultWritableBytes}) is memory-backed, so the sandbox's memory limit is {@code
   * memoryBytes} plus that space. The runners' shares of {@code memoryBytes} stay what they were,
   * and a UDF that fills its scratch space and then grows to its runner's limit fails that runner,
   * not the sandbox. The process limit follows {@code memoryBytes}.
   */
  Limits limits() {
    long writable = Limits.defaultWritableBytes(memoryBytes);
    return new Limits(
        memoryBytes + writable, cpus, writable, Limits.defaultMaxProcesses(memoryBytes), gpus);
  }

  @Override
  public String toString() {
    return name
        + " ("
        + cpus
        + " CPUs, "
        + (memoryBytes >> 20)
        + " MiB, "
        + runners
        + " runners"
        + (gpus > 0 ? ", " + gpus + " GPUs" : "")
        + ")";
  }
}
