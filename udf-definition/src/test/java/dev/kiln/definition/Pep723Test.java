package dev.kiln.definition;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;

class Pep723Test {
  @Test
  void readsDependenciesOfTheScriptBlock() throws Exception {
    String code =
        """
        # /// script
        # requires-python = ">=3.11"
        # dependencies = [
        #   "humanize>=4",
        #   "numpy<3",  # a TOML comment
        # ]
        # ///
        import humanize

        def f(x):
            return humanize.intcomma(x)
        """;
    assertThat(Pep723.dependencies(code)).containsExactly("humanize>=4", "numpy<3");
    assertThat(Pep723.requiresPython(code)).contains(">=3.11");
  }

  @Test
  void noBlockMeansNoDependencies() throws Exception {
    assertThat(Pep723.dependencies("def f(x):\n    return x\n")).isEmpty();
    assertThat(Pep723.dependencies("# ///\n# just a comment\n")).isEmpty();
    assertThat(Pep723.dependencies("# /// script\n# ///\n")).isEmpty();
    assertThat(Pep723.requiresPython("def f(): pass")).isEmpty();
  }

  @Test
  void otherBlockTypesAreIgnoredAndTheLastClosingLineWins() throws Exception {
    String code =
        "# /// other\n# x = 1\n# ///\n\n"
            + "# /// script\n# dependencies = [\"six\"]\n# ///\n# # /// not the end\n# ///\n"
            + "x = 1\n";
    // The block runs to the last '# ///' before the first non-comment line.
    assertThatThrownBy(() -> Pep723.dependencies(code)).hasMessageContaining("not valid TOML");
    String ok =
        "# /// other\n# x = 1\n# ///\n\n# /// script\n# dependencies = [\"six\"]\n# ///\n\nx = 1\n";
    assertThat(Pep723.dependencies(ok)).containsExactly("six");
    // Without a non-comment line between them, the first block runs on to the last '# ///'.
    String swallowed = "# /// other\n# ///\n# /// script\n# dependencies = [\"six\"]\n# ///\n";
    assertThat(Pep723.dependencies(swallowed)).isEmpty();
  }

  @Test
  void errorsNameTheProblemAndTheLine() throws Exception {
    assertThatThrownBy(
            () -> Pep723.dependencies("x = 1\n# /// script\n# dependencies = [\"six\"]\nx = 2\n"))
        .hasMessageContaining("at line 2 is not closed");
    assertThatThrownBy(() -> Pep723.dependencies("# /// script\n# dependencies = \"six\"\n# ///\n"))
        .hasMessageContaining("line 1")
        .hasMessageContaining("'dependencies' must be an array");
    // Each dependency is kept as written; whether it is valid PEP 508 is the resolver's to say
    // (UdfProvisioningServiceTest: the error names the block's line).
    String bad = "\n\n# /// script\n# dependencies = [\"six>>1\"]\n# ///\n";
    assertThat(Pep723.dependencies(bad)).containsExactly("six>>1");
    assertThat(Pep723.scriptLine(bad)).contains(3);
    assertThatThrownBy(() -> Pep723.dependencies("# /// script\n# dependencies = [\n# ///\n"))
        .hasMessageContaining("not valid TOML");
    assertThatThrownBy(
            () ->
                Pep723.dependencies(
                    "# /// script\n# dependencies = []\n# ///\nx=1\n# /// script\n# ///\n"))
        .hasMessageContaining("second '# /// script' block at line 5");
  }
}
