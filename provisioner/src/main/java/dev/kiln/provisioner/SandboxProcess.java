package dev.kiln.provisioner;

import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;

/**
 * A process running inside a sandbox, connected to the host by pipes. Closing {@link #stdin()} is
 * how the host tells it to finish.
 */
public interface SandboxProcess extends AutoCloseable {

  OutputStream stdin();

  InputStream stdout();

  InputStream stderr();

  boolean isAlive();

  /**
   * Completes with the exit status when the process ends: the exit code, or 128 + signal number
   * when a signal killed it.
   */
  CompletableFuture<Integer> exited();

  /** Kills the process (SIGKILL) and waits up to {@code timeout} for it to be gone. */
  void kill(Duration timeout);

  /** Kills the process if it still runs. */
  @Override
  void close();
}
