package dev.kiln.controlplane;

import picocli.CommandLine.Option;

/** The {@code --admin URL} option of the CLI commands that ask a running server's admin port. */
final class AdminOption {
  @Option(
      names = "--admin",
      paramLabel = "URL",
      defaultValue = "http://127.0.0.1:9090",
      description = "The server's admin port (default ${DEFAULT-VALUE}).")
  String url;
}
