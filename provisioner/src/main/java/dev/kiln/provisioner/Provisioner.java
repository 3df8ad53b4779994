package dev.kiln.provisioner;

import java.io.IOException;
import java.util.List;

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

  /** Sandboxes started by this provisioner that have not been closed. */
  List<Sandbox> sandboxes();

  /** Stops every sandbox and releases everything this provisioner holds. Idempotent. */
  @Override
  void close();
}
