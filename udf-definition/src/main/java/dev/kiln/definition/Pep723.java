package dev.kiln.definition;

import static dev.kiln.definition.SpecErrors.invalid;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * PEP 723 inline script metadata: the {@code # /// script} comment block in the UDF code whose TOML
 * lists {@code dependencies} (and optionally {@code requires-python}).
 */
public final class Pep723 {
  private static final TomlMapper TOML = new TomlMapper();
  private static final Pattern OPEN = Pattern.compile("^# /// ([a-zA-Z0-9-]+)$");
  private static final Pattern CONTENT = Pattern.compile("^#(| .*)$");
  private static final Pattern TOML_LINE = Pattern.compile("line: (\\d+)");

  private Pep723() {}

  /** The parsed block: its TOML and where it starts in the code (1-based line of the opener). */
  private record Block(JsonNode toml, int firstLine) {}

  /**
   * The {@code dependencies} of the {@code script} block as written, [] when there is no block.
   * Whether each is a valid PEP 508 requirement is the resolver's to say. Errors in the block name
   * the problem and the line.
   */
  public static List<String> dependencies(String code) throws KilnException {
    Optional<Block> block = scriptBlock(code);
    if (block.isEmpty()) {
      return List.of();
    }
    JsonNode deps = block.get().toml().get("dependencies");
    if (deps == null || deps.isNull()) {
      return List.of();
    }
    int line = block.get().firstLine();
    if (!deps.isArray()) {
      throw invalid(
          "PEP 723 block at line "
              + line
              + ": 'dependencies' must be an array of strings, e.g."
              + " dependencies = [\"humanize\"]");
    }
    List<String> out = new ArrayList<>();
    for (JsonNode d : deps) {
      if (!d.isTextual()) {
        throw invalid(
            "PEP 723 block at line "
                + line
                + ": 'dependencies' must contain only strings, got "
                + d);
      }
      out.add(d.textValue());
    }
    return List.copyOf(out);
  }

  /** The line (1-based) where the {@code script} block starts, if the code has one. */
  public static Optional<Integer> scriptLine(String code) throws KilnException {
    return scriptBlock(code).map(Block::firstLine);
  }

  /** The block's {@code requires-python} specifier as written, if it has one. */
  public static Optional<String> requiresPython(String code) throws KilnException {
    Optional<Block> block = scriptBlock(code);
    if (block.isEmpty()) {
      return Optional.empty();
    }
    JsonNode rp = block.get().toml().get("requires-python");
    if (rp == null || rp.isNull()) {
      return Optional.empty();
    }
    if (!rp.isTextual()) {
      throw invalid(
          "PEP 723 block at line "
              + block.get().firstLine()
              + ": 'requires-python' must be a"
              + " string such as \">=3.11\"");
    }
    return Optional.of(rp.textValue());
  }

  private static Optional<Block> scriptBlock(String code) throws KilnException {
    if (code == null || !code.contains("# ///")) {
      return Optional.empty(); // the common case costs one scan
    }
    String[] lines = code.split("\r?\n", -1);
    Block found = null;
    for (int i = 0; i < lines.length; i++) {
      Matcher open = OPEN.matcher(lines[i]);
      if (!open.matches()) {
        continue;
      }
      // The block runs over consecutive comment lines; the last '# ///' among them closes it.
      int close = -1;
      int j = i + 1;
      while (j < lines.length && CONTENT.matcher(lines[j]).matches()) {
        if (lines[j].equals("# ///")) {
          close = j;
        }
        j++;
      }
      if (close < 0) {
        throw invalid(
            "PEP 723 block '# /// "
                + open.group(1)
                + "' at line "
                + (i + 1)
                + " is not closed;"
                + " end it with a line '# ///' directly after its last '#' line");
      }
      if (open.group(1).equals("script")) {
        if (found != null) {
          throw invalid(
              "PEP 723: a second '# /// script' block at line "
                  + (i + 1)
                  + " (the first is at"
                  + " line "
                  + found.firstLine()
                  + "); keep one block");
        }
        found = new Block(parseToml(lines, i, close), i + 1);
      }
      i = close;
    }
    return Optional.ofNullable(found);
  }

  private static JsonNode parseToml(String[] lines, int open, int close) throws KilnException {
    StringBuilder toml = new StringBuilder();
    for (int k = open + 1; k < close; k++) {
      toml.append(lines[k].length() <= 1 ? "" : lines[k].substring(2)).append('\n');
    }
    try {
      JsonNode node = TOML.readTree(toml.toString());
      return node == null ? TOML.createObjectNode() : node;
    } catch (JsonProcessingException e) {
      int line = open + 2;
      if (e.getLocation() != null && e.getLocation().getLineNr() > 0) {
        line = open + 1 + e.getLocation().getLineNr();
      } else {
        Matcher m = TOML_LINE.matcher(String.valueOf(e.getOriginalMessage()));
        if (m.find()) {
          line = open + 1 + Integer.parseInt(m.group(1));
        }
      }
      throw invalid(
          "PEP 723 block at line "
              + (open + 1)
              + " is not valid TOML (line "
              + line
              + "): "
              + e.getOriginalMessage());
    }
  }
}
