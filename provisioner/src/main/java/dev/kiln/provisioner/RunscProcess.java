package dev.kiln.provisioner;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A process in a sandbox, seen through the host process that runsc runs for it ({@code runsc run}
 * for init, {@code runsc exec} for the others). runsc hands the host pipes to the sandboxed
 * process, so its stdio is the host process's, and runsc exits with the sandboxed process's status
 * (128 + signal when a signal killed it).
 *
 * <p>Killing the host process would not reach into the sandbox, so {@link #kill} asks runsc to send
 * SIGKILL to the sandboxed process and only falls back to killing the host process.
 */
final class RunscProcess implements SandboxProcess {
  private static final Logger log = LoggerFactory.getLogger(RunscProcess.class);
  private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(5);

  /** Sends SIGKILL to the sandboxed process. */
  interface Killer {
    void kill() throws IOException;
  }

  private final String description;
  private final Process host;
  private final InputStream stdout;
  private final CompletableFuture<Integer> exited;
  private final Killer killer;

  RunscProcess(
      String description,
      Process host,
      InputStream stdout,
      CompletableFuture<Integer> exited,
      Killer killer) {
    this.description = description;
    this.host = host;
    this.stdout = stdout;
    this.exited = exited;
    this.killer = killer;
  }

  Process host() {
    return host;
  }

  @Override
  public OutputStream stdin() {
    return host.getOutputStream();
  }

  @Override
  public InputStream stdout() {
    return stdout;
  }

  @Override
  public InputStream stderr() {
    return host.getErrorStream();
  }

  @Override
  public boolean isAlive() {
    return host.isAlive();
  }

  @Override
  public CompletableFuture<Integer> exited() {
    return exited;
  }

  @Override
  public void kill(Duration timeout) {
    if (!host.isAlive()) {
      return;
    }
    try {
      killer.kill();
    } catch (IOException e) {
      log.debug("runsc could not kill {}: {}", description, e.toString());
    }
    try {
      if (!host.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        log.warn(
            "{} did not end within {} ms of SIGKILL; killing its runsc process",
            description,
            timeout.toMillis());
        host.destroyForcibly();
        host.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
      }
    } catch (InterruptedException e) {
      host.destroyForcibly();
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public void close() {
    kill(CLOSE_TIMEOUT);
  }

  @Override
  public String toString() {
    return description;
  }
}
