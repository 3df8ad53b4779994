package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * {@code kiln --help} and every command's help read as a person would: each command listed with a
 * complete one-line summary, examples and exit statuses at the end, nothing wider than a terminal.
 */
class CliHelpTest {
  private static List<CommandLine> everyCommand(CommandLine c) {
    List<CommandLine> all = new ArrayList<>(List.of(c));
    for (CommandLine sub : c.getSubcommands().values()) {
      all.addAll(everyCommand(sub));
    }
    return all;
  }

  @Test
  void everyCommandHasACompleteSummaryExamplesAndExitStatuses() {
    CommandLine root = new CommandLine(new Kiln());
    for (CommandLine c : everyCommand(root)) {
      String name = c.getCommandSpec().qualifiedName();
      String usage = c.getUsageMessage(CommandLine.Help.Ansi.OFF);
      if (c != root) {
        String[] header = c.getCommandSpec().usageMessage().header();
        assertThat(header).as("%s: one summary line", name).hasSize(1);
        assertThat(header[0]).as("%s: a whole sentence", name).endsWith(".");
      }
      assertThat(usage).as("%s", name).contains("Example").doesNotContain("Could not format");
      if (c.getSubcommands().isEmpty() || c == root) {
        assertThat(usage).as("%s", name).contains("Exit status:");
      }
      for (String line : usage.split("\n")) {
        assertThat(line.length()).as("%s: %s", name, line).isLessThanOrEqualTo(80);
      }
    }
    String listing = root.getUsageMessage(CommandLine.Help.Ansi.OFF);
    for (CommandLine sub : root.getSubcommands().values()) {
      String header = sub.getCommandSpec().usageMessage().header()[0];
      assertThat(listing).as("the listing shows the whole summary").contains(header);
    }
  }
}
