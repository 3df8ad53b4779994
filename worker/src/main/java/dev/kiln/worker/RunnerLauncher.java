package dev.kiln.worker;

import java.io.IOException;
import java.util.List;

/** Starts a runner process ({@link RunnerFiles#serveCommand()}) wherever the UDF lives. */
@FunctionalInterface
public interface RunnerLauncher {

  /**
   * Starts one runner with these environment variables ({@code KEY=value}) on top of the image's,
   * e.g. {@code KILN_MEMORY_LIMIT} when the pool has a per-runner memory limit.
   */
  RunnerProcess launch(List<String> env) throws IOException;
}
