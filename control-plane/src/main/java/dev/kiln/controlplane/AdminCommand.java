package dev.kiln.controlplane;

import java.util.concurrent.Callable;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * A CLI command that asks a running server's admin port for one page: with {@code --json} it prints
 * the page as the server sent it, else it renders it for a terminal; exit 1 with a message that
 * says what to do when the server cannot be asked.
 */
abstract class AdminCommand implements Callable<Integer> {
  @Mixin AdminOption admin;

  @Option(names = "--json", description = "Print the server's JSON for scripts instead of a table.")
  boolean json;

  /** The page, from the admin port at {@code url}. */
  abstract String fetch(String url) throws AdminClient.CommandFailure;

  /** Prints the page for a terminal. */
  abstract void render(String body) throws Exception;

  @Override
  public Integer call() throws Exception {
    String body;
    try {
      body = fetch(admin.url);
    } catch (AdminClient.CommandFailure e) {
      System.err.println(e.getMessage());
      return 1;
    }
    if (json) {
      System.out.print(body);
    } else {
      render(body);
    }
    return 0;
  }
}
