package dev.kiln.controlplane;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code kiln} command line: {@code serve}, {@code apply}, {@code call}, {@code logs}, {@code
 * cache stats}, {@code workers}, {@code egress}.
 */
@Command(
    name = "kiln",
    mixinStandardHelpOptions = true,
    version = "kiln 0.1.0",
    description = "Control plane for sandboxed Python UDFs (Databend server-UDF protocol).",
    footer = {
      "%nExamples:",
      "  kiln serve                                  start Kiln with embedded defaults",
      "  kiln apply --spec examples/add_one.json     ask for a UDF resource",
      "  kiln ps                                     what runs now",
      "  kiln COMMAND --help                         one command's flags and examples",
      "%nExit status:",
      "  0  done",
      "  1  the server refused or failed (its code and message on stderr)",
      "  2  bad usage"
    },
    subcommands = {
      ServeCommand.class,
      ApplyCommand.class,
      PrewarmCommand.class,
      CallCommand.class,
      LogsCommand.class,
      CacheCommand.class,
      PsCommand.class,
      WorkersCommand.class,
      EgressCommand.class
    })
public final class Kiln implements Runnable {

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  public static void main(String[] args) {
    // Netty 4.2 turns sun.misc.Unsafe off on Java 25+, and Arrow's Netty allocator needs it.
    // Set before any Netty class loads; an explicit -D on the command line wins.
    if (System.getProperty("io.netty.noUnsafe") == null) {
      System.setProperty("io.netty.noUnsafe", "false");
    }
    // Netty then allocates its pooled chunks with malloc instead of as Java direct buffers, which
    // Java zeroes first: under Databend's load chunks come and go, and that zeroing was an eighth
    // of the Flight endpoint's network threads' CPU (fast-client benchmark, 256 calls in flight).
    // Needs java.nio opened to Netty, as bin/kiln does; without it Netty zeroes as before.
    if (System.getProperty("io.netty.tryReflectionSetAccessible") == null) {
      System.setProperty("io.netty.tryReflectionSetAccessible", "true");
    }
    int code = new CommandLine(new Kiln()).setCaseInsensitiveEnumValuesAllowed(true).execute(args);
    System.exit(code);
  }

  @Override
  public void run() {
    spec.commandLine().usage(System.err);
  }
}
