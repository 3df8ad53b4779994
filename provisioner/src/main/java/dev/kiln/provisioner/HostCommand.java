package dev.kiln.provisioner;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A short-lived host command (tar, mount, runsc kill ...) run to completion with a deadline.
 *
 * @param exitCode the command's exit status (128 + signal when a signal ended it)
 * @param stdout what it wrote to stdout
 * @param stderr what it wrote to stderr
 */
record HostCommand(int exitCode, String stdout, String stderr) {

  boolean ok() {
    return exitCode == 0;
  }

  /** stderr (or stdout when stderr is empty), trimmed and cut to a size fit for a message. */
  String diagnostics() {
    String text = stderr.isBlank() ? stdout : stderr;
    return tail(text.strip(), 2000);
  }

  static HostCommand run(List<String> argv, Duration timeout) throws IOException {
    return run(argv, null, null, timeout);
  }

  /**
   * Runs {@code argv} in {@code directory} (the JVM's when null), feeding it {@code stdin} (nothing
   * when null). Kills it and fails when it does not finish within {@code timeout}.
   */
  static HostCommand run(List<String> argv, Path directory, byte[] stdin, Duration timeout)
      throws IOException {
    ProcessBuilder pb = new ProcessBuilder(argv);
    if (directory != null) {
      pb.directory(directory.toFile());
    }
    if (stdin == null) {
      pb.redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
    }
    Process p = pb.start();
    // Both outputs are drained concurrently so a chatty command cannot fill one pipe and stall.
    CompletableFuture<String> out = drain(p.getInputStream());
    CompletableFuture<String> err = drain(p.getErrorStream());
    try {
      if (stdin != null) {
        try (var in = p.getOutputStream()) {
          in.write(stdin);
        }
      }
      if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
        p.destroyForcibly();
        p.waitFor(5, TimeUnit.SECONDS);
        throw new IOException(
            "'" + String.join(" ", argv) + "' did not finish within " + timeout.toSeconds() + " s");
      }
      return new HostCommand(p.exitValue(), text(out), text(err));
    } catch (InterruptedException e) {
      p.destroyForcibly();
      Thread.currentThread().interrupt();
      throw new IOException("interrupted while running '" + String.join(" ", argv) + "'", e);
    }
  }

  private static CompletableFuture<String> drain(InputStream in) {
    CompletableFuture<String> f = new CompletableFuture<>();
    Thread.ofVirtual()
        .start(
            () -> {
              try (in) {
                f.complete(new String(in.readAllBytes(), StandardCharsets.UTF_8));
              } catch (IOException e) {
                f.complete("");
              }
            });
    return f;
  }

  private static String text(CompletableFuture<String> f) {
    try {
      // A grandchild that inherited the pipe could keep it open; do not wait for it forever.
      return f.get(2, TimeUnit.SECONDS);
    } catch (TimeoutException | ExecutionException e) {
      return "";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "";
    }
  }

  static String tail(String text, int max) {
    return text.length() <= max ? text : "..." + text.substring(text.length() - max);
  }
}
