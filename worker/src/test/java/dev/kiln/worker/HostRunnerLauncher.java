package dev.kiln.worker;

import dev.kiln.definition.RuntimeSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * Runs runners as host processes: writes the runner layer and the code layer (the same files the
 * image gets) under a directory and starts {@code python3 <dir>/kiln/runner/kiln_runner.py serve}
 * with {@code KILN_UDF_DIR} pointing at the code. The gVisor path (the same files inside a runsc
 * sandbox) is covered by the control plane's end-to-end tests.
 */
final class HostRunnerLauncher implements RunnerLauncher {

  private final Path root;
  private final List<Process> started = new CopyOnWriteArrayList<>();
  private final List<List<String>> environments = new CopyOnWriteArrayList<>();

  private final List<String> command;

  HostRunnerLauncher(Path dir, RuntimeSpec spec) throws IOException {
    this(dir, spec, RunnerFiles.serveCommand());
  }

  private HostRunnerLauncher(Path dir, RuntimeSpec spec, List<String> command) throws IOException {
    this.root = dir;
    this.command = command;
    write(RunnerFiles.runtimeFiles());
    write(RunnerFiles.udfFiles(spec));
  }

  /**
   * Runners whose stdin and stdout do not block: reads find nothing yet and writes find the pipe
   * full, as on a TCP connection under gVisor's host network.
   */
  static HostRunnerLauncher nonBlocking(Path dir, RuntimeSpec spec) throws IOException {
    List<String> serve = RunnerFiles.serveCommand();
    List<String> command = new ArrayList<>();
    command.add(serve.getFirst());
    command.add("-c");
    command.add(
        "import os, runpy, sys\n"
            + "os.set_blocking(0, False)\n"
            + "os.set_blocking(1, False)\n"
            + "sys.argv = sys.argv[1:]\n"
            + "sys.path.insert(0, os.path.dirname(sys.argv[0]))\n"
            + "runpy.run_path(sys.argv[0], run_name='__main__')\n");
    command.addAll(serve.subList(1, serve.size()));
    return new HostRunnerLauncher(dir, spec, command);
  }

  /** Pooled runners ({@link PooledRunners#command()}): the runner layer only, no UDF yet. */
  HostRunnerLauncher(Path dir) throws IOException {
    this.root = dir;
    this.command = PooledRunners.command();
    write(RunnerFiles.runtimeFiles());
  }

  private void write(Map<String, byte[]> files) throws IOException {
    for (Map.Entry<String, byte[]> file : files.entrySet()) {
      Path target = inRoot(file.getKey());
      Files.createDirectories(target.getParent());
      Files.write(target, file.getValue());
    }
  }

  /** An absolute path in the image, mapped under {@link #root}. */
  Path inRoot(String imagePath) {
    return root.resolve(imagePath.substring(1));
  }

  /** {@code command} with the runner's path under {@link #root}, in the image's environment. */
  private ProcessBuilder builder(List<String> command) {
    List<String> mapped = new ArrayList<>(command);
    // The runner's path in the image, mapped under the root.
    int runner = mapped.indexOf(RunnerFiles.RUNNER_PATH);
    mapped.set(runner, inRoot(RunnerFiles.RUNNER_PATH).toString());
    ProcessBuilder builder = new ProcessBuilder(mapped);
    builder.environment().putAll(RunnerFiles.environment());
    builder.environment().put("KILN_UDF_DIR", inRoot(RunnerFiles.UDF_DIR).toString());
    return builder;
  }

  @Override
  public RunnerProcess launch(List<String> env) throws IOException {
    ProcessBuilder builder = builder(command);
    for (String e : env) {
      int eq = e.indexOf('=');
      builder.environment().put(e.substring(0, eq), e.substring(eq + 1));
    }
    environments.add(List.copyOf(env));
    Process process = builder.start();
    started.add(process);
    return RunnerProcess.of(process);
  }

  /**
   * Starts a runner listener on loopback ({@link RunnerFiles#listenCommand}) with the UDF's files
   * and environment, as a sandbox pod runs it, and returns it once it listens; the caller stops it.
   */
  Listener listen() throws IOException {
    Process process =
        builder(RunnerFiles.listenCommand("127.0.0.1:0"))
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start();
    started.add(process);
    try {
      return new Listener(process, TcpRunnerLauncher.listening(process));
    } catch (IOException | RuntimeException e) {
      process.destroyForcibly();
      throw e;
    }
  }

  /** A runner listener process and where it listens. */
  record Listener(Process process, java.net.InetSocketAddress address) implements AutoCloseable {
    @Override
    public void close() {
      process.destroyForcibly();
    }
  }

  /** The extra environment of every launch, in order. */
  List<List<String>> environments() {
    return List.copyOf(environments);
  }

  /** Every process this launcher started, in order. */
  List<Process> started() {
    return List.copyOf(started);
  }
}
