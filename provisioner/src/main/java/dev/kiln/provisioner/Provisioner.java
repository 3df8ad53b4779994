package dev.kiln.provisioner;

import java.io.IOException;
import java.time.Instant;
import java.util.List;
import java.util.Set;

/**
 * Places images in sandboxes. Implementations: {@link RunscProvisioner} (local gVisor).
 *
 * <p>Contract for images: the init process signals readiness by writing one line to its stdout;
 * {@link #start} returns once that line arrived (or fails when the process exits or the start
 * timeout passes first). The line is consumed by the provisioner.
 */
public interface Provisioner extends AutoCloseable {

  /** Starts a sandbox and waits until its init process is ready. */
  Sandbox start(SandboxSpec spec) throws IOException, InterruptedException;

  /**
   * Gets an image ready to start fast (e.g. extracts its layers) without starting it, so the first
   * sandbox of a new image does not pay for it. Optional; the default does nothing.
   */
  default void prepare(SandboxImage image) throws IOException, InterruptedException {}

  /** What {@link #collect} removed (or would remove): prepared layers and their bytes. */
  record Collected(int layers, long bytes) {}

  /**
   * Removes what this provisioner prepared for images (e.g. extracted layers) that no running or
   * starting sandbox uses, that is not in {@code keepLayers} (layer digests) and that was not used
   * since {@code unusedBefore}. Optional; the default removes nothing.
   */
  default Collected collect(Set<String> keepLayers, Instant unusedBefore, boolean dryRun)
      throws IOException {
    return new Collected(0, 0);
  }

  /** Sandboxes started by this provisioner that have not been closed. */
  List<Sandbox> sandboxes();

  /** Stops every sandbox and releases everything this provisioner holds. Idempotent. */
  @Override
  void close();

  /**
   * No sandboxes here: a Kiln whose sandboxes are all pods and that cannot run gVisor itself
   * ({@code --kubernetes} in an unprivileged pod). Starting one is an error that says so.
   */
  static Provisioner none(String why) {
    return new Provisioner() {
      @Override
      public Sandbox start(SandboxSpec spec) throws IOException {
        throw new IOException("no sandbox runs on this machine: " + why);
      }

      @Override
      public List<Sandbox> sandboxes() {
        return List.of();
      }

      @Override
      public void close() {}
    };
  }
}
