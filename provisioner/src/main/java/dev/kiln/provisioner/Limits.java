package dev.kiln.provisioner;

/**
 * Resource limits of one sandbox.
 *
 * @param memoryBytes memory limit of the whole sandbox (all its processes), in bytes
 * @param cpus CPU quota in cores (e.g. 2.0); the sandbox reports this many CPUs rounded up (runsc
 *     --cpu-num-from-quota: at least 2, at most the host's)
 */
public record Limits(long memoryBytes, double cpus) {
  public Limits {
    if (memoryBytes < 16L << 20) {
      throw new IllegalArgumentException(
          "memory limit must be at least 16 MiB, got " + memoryBytes);
    }
    if (!(cpus > 0)) {
      throw new IllegalArgumentException("cpus must be positive, got " + cpus);
    }
  }

  /** Memory limit in MiB, for messages. */
  public long memoryMiB() {
    return memoryBytes >> 20;
  }
}
