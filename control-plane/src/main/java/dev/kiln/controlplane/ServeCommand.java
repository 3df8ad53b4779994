package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

/** {@code kiln serve}: runs the control plane until SIGTERM or SIGINT. */
@Command(
    name = "serve",
    header = "Starts Kiln: the gRPC API, the Flight endpoint and the admin port.",
    footer = {
      "%nExamples:",
      "  kiln serve                                  all on this machine, defaults",
      "  kiln serve --warm-pool 4 --sandbox-cpus 2   more warm sandboxes, 2 CPUs each",
      "  kiln serve --config kiln.toml               flags from a file",
      "%nExit status:",
      "  0  stopped cleanly",
      "  1  it could not start (the reason on stderr)",
      "  2  bad usage"
    },
    mixinStandardHelpOptions = true,
    description = {
      "Starts Kiln: the provisioning API (gRPC), the Flight endpoint and the admin port.",
      "With no flags it runs everything on this machine: images in the data directory,",
      "sandboxes with local gVisor (runsc)."
    })
final class ServeCommand implements Callable<Integer> {

  @Mixin ServerOptions options;

  @Override
  public Integer call() throws Exception {
    KilnConfig config = options.configOrExplain("kiln serve", b -> b);
    if (config == null) {
      return 2;
    }
    KilnServer server;
    try {
      server = KilnServer.start(config);
    } catch (KilnException e) {
      System.err.println("kiln serve: " + e.getMessage());
      return 1;
    }
    Thread hook = new Thread(server::close, "kiln-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    server.awaitTermination();
    return 0;
  }
}
