package dev.kiln.benchmarks;

import dev.kiln.controlplane.KilnConfig;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A Python virtual environment on the host with pyarrow, for the benchmarks' native Flight client
 * and server (this module's {@code *.py} resources). It lives in Kiln's cache directory ({@code
 * bench-venv}), is made with the host's {@code python3 -m venv} and filled by pip from the
 * machine's configured package index, once: a later run finds pyarrow there and reuses it. Never
 * part of a sandbox image.
 */
final class BenchVenv {
  private final Path dir;

  private BenchVenv(Path dir) {
    this.dir = dir;
  }

  /** The cached environment, made (or made again, when pyarrow does not import) first. */
  static BenchVenv ready() throws IOException, InterruptedException {
    BenchVenv venv = new BenchVenv(Path.of(KilnConfig.cacheDir(), "bench-venv"));
    if (!venv.imports()) {
      if (Files.exists(venv.dir)) {
        ThroughputBenchmark.deleteTree(venv.dir);
      }
      Files.createDirectories(venv.dir.getParent());
      System.out.println("making " + venv.dir + " (python3 -m venv, pip install pyarrow)");
      venv.run(List.of("python3", "-m", "venv", venv.dir.toString()));
      // --retries 0: an index that cannot be reached (the default one, offline) is given up at
      // once.
      venv.run(List.of(venv.python(), "-m", "pip", "install", "--retries", "0", "pyarrow"));
      if (!venv.imports()) {
        throw new IllegalStateException("pyarrow.flight does not import in " + venv.dir);
      }
    }
    return venv;
  }

  String python() {
    return dir.resolve("bin/python").toString();
  }

  /** pyarrow's version in the environment. */
  String version() throws IOException, InterruptedException {
    Process p =
        new ProcessBuilder(python(), "-c", "import pyarrow; print(pyarrow.__version__)")
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    p.waitFor(60, TimeUnit.SECONDS);
    return out;
  }

  /** The path of one of this module's Python resources, copied into the environment. */
  String script(String name) throws IOException {
    Path target = Files.createDirectories(dir.resolve("kiln-bench")).resolve(name);
    try (InputStream in = BenchVenv.class.getResourceAsStream(name)) {
      if (in == null) {
        throw new IllegalStateException("no resource " + name);
      }
      Files.copy(in, target, StandardCopyOption.REPLACE_EXISTING);
    }
    return target.toString();
  }

  private boolean imports() throws IOException, InterruptedException {
    if (!Files.isExecutable(dir.resolve("bin/python"))) {
      return false;
    }
    Process p =
        new ProcessBuilder(python(), "-c", "import pyarrow.flight")
            .redirectErrorStream(true)
            .redirectOutput(ProcessBuilder.Redirect.DISCARD)
            .start();
    return p.waitFor(60, TimeUnit.SECONDS) && p.exitValue() == 0;
  }

  private void run(List<String> command) throws IOException, InterruptedException {
    Path log = Files.createTempFile("kiln-bench-venv-", ".log");
    try {
      Process p =
          new ProcessBuilder(command)
              .redirectErrorStream(true)
              .redirectOutput(log.toFile())
              .start();
      if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
        p.destroyForcibly();
        throw new IllegalStateException(
            String.join(" ", command)
                + " failed:\n"
                + Files.readString(log, StandardCharsets.UTF_8));
      }
    } finally {
      Files.deleteIfExists(log);
    }
  }
}
