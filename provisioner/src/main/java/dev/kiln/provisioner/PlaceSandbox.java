package dev.kiln.provisioner;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * The provisioning pipeline's sandbox step: places an image in a sandbox of the {@link
 * Provisioner}, with its failures as {@link KilnException}s; and runs one command in a throwaway
 * sandbox, for facts about an image that only running it can tell.
 */
public final class PlaceSandbox {
  private final Provisioner provisioner;
  private final SandboxBudget budget;

  /** Places sandboxes without a node budget. */
  public PlaceSandbox(Provisioner provisioner) {
    this(provisioner, null);
  }

  /** Places sandboxes inside {@code budget} (null: none). */
  public PlaceSandbox(Provisioner provisioner, SandboxBudget budget) {
    this.provisioner = Objects.requireNonNull(provisioner, "provisioner");
    this.budget = budget;
  }

  /**
   * Starts a sandbox and waits until its init process is ready; inside the node budget, when there
   * is one (its room is given back when the sandbox stops).
   *
   * @throws KilnException {@link ErrorCode#SANDBOX_UNAVAILABLE} when it cannot be started, {@link
   *     ErrorCode#NODE_BUDGET_EXHAUSTED} when the budget has no room and nothing idle to stop
   */
  public Sandbox place(SandboxSpec spec) throws KilnException, InterruptedException {
    if (budget != null) {
      budget.reserve(spec.limits());
    }
    return startReserved(spec);
  }

  /**
   * Starts a sandbox when the node budget has room for it now, without stopping anything for it;
   * empty when it has none.
   *
   * @throws KilnException {@link ErrorCode#SANDBOX_UNAVAILABLE} when it cannot be started
   */
  public Optional<Sandbox> placeIfRoom(SandboxSpec spec)
      throws KilnException, InterruptedException {
    if (budget != null && !budget.tryReserve(spec.limits())) {
      return Optional.empty();
    }
    return Optional.of(startReserved(spec));
  }

  private Sandbox startReserved(SandboxSpec spec) throws KilnException, InterruptedException {
    Sandbox sandbox;
    try {
      sandbox = provisioner.start(spec);
    } catch (IOException e) {
      release(spec);
      throw new KilnException(
          ErrorCode.SANDBOX_UNAVAILABLE,
          "starting the UDF's gVisor sandbox failed: " + e.getMessage(),
          e);
    } catch (InterruptedException | RuntimeException e) {
      release(spec);
      throw e;
    }
    if (budget != null) {
      sandbox.stopped().whenComplete((v, e) -> budget.release(spec.limits()));
    }
    return sandbox;
  }

  private void release(SandboxSpec spec) {
    if (budget != null) {
      budget.release(spec.limits());
    }
  }

  /** Gets an image ready to start fast (see {@link Provisioner#prepare}). */
  public void prepare(SandboxImage image) throws IOException, InterruptedException {
    provisioner.prepare(image);
  }

  /**
   * Runs {@code argv} in a throwaway sandbox of {@code spec}'s image with stdin closed, and returns
   * what it printed on stdout.
   *
   * @throws IOException when the sandbox cannot start, the command exits non-zero (the message
   *     holds its stderr) or does not finish within {@code timeout}
   */
  public String runOnce(SandboxSpec spec, List<String> argv, Duration timeout)
      throws IOException, InterruptedException {
    try (Sandbox sandbox = provisioner.start(spec);
        SandboxProcess p = sandbox.exec(argv, List.of())) {
      p.stdin().close();
      CompletableFuture<byte[]> err = CompletableFuture.supplyAsync(() -> readAll(p.stderr()));
      byte[] out = p.stdout().readAllBytes();
      int status;
      try {
        status = p.exited().get(timeout.toNanos(), TimeUnit.NANOSECONDS);
      } catch (TimeoutException e) {
        throw new IOException(
            "'" + argv.get(0) + "' did not finish within " + timeout.toSeconds() + " s", e);
      } catch (ExecutionException e) {
        throw new IOException("waiting for '" + argv.get(0) + "' failed: " + e.getCause(), e);
      }
      if (status != 0) {
        String stderr;
        try {
          stderr = new String(err.get(5, TimeUnit.SECONDS), StandardCharsets.UTF_8).strip();
        } catch (ExecutionException | TimeoutException e) {
          stderr = "(its stderr could not be read)";
        }
        throw new IOException("'" + argv.get(0) + "' exited with " + status + ": " + stderr);
      }
      return new String(out, StandardCharsets.UTF_8);
    }
  }

  private static byte[] readAll(InputStream in) {
    try {
      return in.readAllBytes();
    } catch (IOException e) {
      return new byte[0];
    }
  }
}
