package dev.kiln.worker;

import java.io.IOException;

/** Starts a runner process ({@link RunnerFiles#serveCommand()}) wherever the UDF lives. */
@FunctionalInterface
public interface RunnerLauncher {
  RunnerProcess launch() throws IOException;
}
