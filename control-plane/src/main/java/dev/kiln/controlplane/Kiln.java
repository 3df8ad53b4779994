package dev.kiln.controlplane;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/**
 * The {@code kiln} command line: {@code serve}, {@code apply}, {@code call}, {@code logs}, {@code
 * cache stats}, {@code workers}.
 */
@Command(
    name = "kiln",
    mixinStandardHelpOptions = true,
    version = "kiln 0.1.0",
    description = "Control plane for sandboxed Python UDFs (Databend server-UDF protocol).",
    subcommands = {
      ServeCommand.class,
      ApplyCommand.class,
      CallCommand.class,
      LogsCommand.class,
      CacheCommand.class,
      PsCommand.class,
      WorkersCommand.class
    })
public final class Kiln implements Runnable {

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  public static void main(String[] args) {
    // Netty 4.2 turns sun.misc.Unsafe off on Java 25+, and Arrow's Netty allocator needs it.
    // Set before any Netty class loads; an explicit -D on the command line wins.
    if (System.getProperty("io.netty.noUnsafe") == null) {
      System.setProperty("io.netty.noUnsafe", "false");
    }
    int code = new CommandLine(new Kiln()).setCaseInsensitiveEnumValuesAllowed(true).execute(args);
    System.exit(code);
  }

  @Override
  public void run() {
    spec.commandLine().usage(System.err);
  }
}
