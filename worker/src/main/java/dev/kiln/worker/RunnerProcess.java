package dev.kiln.worker;

import java.io.InputStream;
import java.io.OutputStream;
import java.util.concurrent.CompletableFuture;

/**
 * One runner process (in a sandbox, or on the host in tests), connected by pipes. The worker speaks
 * its binary protocol over stdin/stdout; stderr carries the UDF's own output.
 */
public interface RunnerProcess {

  OutputStream stdin();

  InputStream stdout();

  InputStream stderr();

  boolean isAlive();

  /** Completes with the exit status: the exit code, or 128 + signal number. */
  CompletableFuture<Integer> exited();

  /** Kills the process; returns at once. */
  void kill();

  /** A runner that is a process of this machine, connected by its pipes. */
  static RunnerProcess of(Process process) {
    return of(process, process.getInputStream());
  }

  /** As {@link #of(Process)}, its frames read from {@code stdout} (which may replay some first). */
  static RunnerProcess of(Process process, InputStream stdout) {
    return new RunnerProcess() {
      @Override
      public OutputStream stdin() {
        return process.getOutputStream();
      }

      @Override
      public InputStream stdout() {
        return stdout;
      }

      @Override
      public InputStream stderr() {
        return process.getErrorStream();
      }

      @Override
      public boolean isAlive() {
        return process.isAlive();
      }

      @Override
      public CompletableFuture<Integer> exited() {
        return process.onExit().thenApply(Process::exitValue);
      }

      @Override
      public void kill() {
        process.destroyForcibly();
      }
    };
  }
}
