package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

/**
 * The wire's numbers are defined once on each side: {@link TypeCode} and {@link FrameIO} in Java,
 * {@code kiln_wire.py} in Python. This reads the Python module as the runner layer ships it (a
 * class-path resource, no Python process) and checks that both sides name the same codes with the
 * same numbers, in both directions; PROTOCOL.md's frame table too.
 */
class TypeCodeTest {

  /** {@code NAME = 12} or {@code NAME = 0x12}, an optional comment after it. */
  private static final Pattern CONSTANT =
      Pattern.compile("^([A-Z][A-Z0-9_]*) = (0x[0-9a-fA-F]+|[0-9]+)\\s*(#.*)?$");

  private static final Pattern DICT_ENTRY = Pattern.compile("\\b([A-Z][A-Z0-9_]*): ([^,}]+)");

  @Test
  void pythonAndJavaHaveTheSameTypeCodes() throws IOException {
    Map<String, Integer> python = constants(section(kilnWire(), "type codes"));
    Map<String, Integer> java =
        Arrays.stream(TypeCode.values())
            .collect(
                Collectors.toMap(TypeCode::name, c -> c.code, (a, b) -> a, LinkedHashMap::new));

    assertThat(python).as("kiln_wire.py's type codes").containsAllEntriesOf(java);
    assertThat(java).as("TypeCode").containsAllEntriesOf(python);
    assertThat(python.values()).as("distinct numbers").doesNotHaveDuplicates();
  }

  @Test
  void pythonNamesEveryTypeCodeByItsOwnName() throws IOException {
    Map<String, String> names = dict(kilnWire(), "TYPE_NAMES");

    assertThat(names.keySet())
        .containsExactlyInAnyOrderElementsOf(
            Arrays.stream(TypeCode.values()).map(TypeCode::name).toList());
    names.forEach((code, name) -> assertThat(name).isEqualTo('"' + code + '"'));
  }

  @Test
  void pythonAndJavaAgreeOnFixedWidths() throws IOException {
    Map<String, String> widths = dict(kilnWire(), "WIDTHS");

    assertThat(widths).isNotEmpty();
    widths.forEach(
        (code, width) ->
            assertThat(Integer.parseInt(width)).as(code).isEqualTo(TypeCode.valueOf(code).width));
  }

  @Test
  void pythonJavaAndProtocolMdHaveTheSameFrameTypes() throws IOException {
    Map<String, Integer> java =
        Map.of(
            "READY", FrameIO.READY,
            "LOAD_ERROR", FrameIO.LOAD_ERROR,
            "WAITING", FrameIO.WAITING,
            "LOAD", FrameIO.LOAD,
            "BATCH", FrameIO.BATCH,
            "RESULT", FrameIO.RESULT,
            "BATCH_ERROR", FrameIO.BATCH_ERROR);
    Map<String, Integer> protocol = new LinkedHashMap<>();
    Matcher row =
        Pattern.compile("(?m)^\\| (0x[0-9a-f]{2}) \\| ([A-Z_]+) \\|")
            .matcher(resource("PROTOCOL.md"));
    while (row.find()) {
      protocol.put(row.group(2), Integer.decode(row.group(1)));
    }

    assertThat(constants(section(kilnWire(), "frame types"))).isEqualTo(java);
    assertThat(protocol).isEqualTo(java);
  }

  @Test
  void pythonAndJavaHaveTheSameColumnFlags() throws IOException {
    Map<String, Integer> python = constants(section(kilnWire(), "columns"));

    assertThat(python)
        .containsEntry("HAS_NULLS", TypeCode.HAS_NULLS)
        .containsEntry("SEPARATED", TypeCode.SEPARATED);
  }

  private static List<String> kilnWire() throws IOException {
    return resource("kiln_wire.py").lines().toList();
  }

  private static String resource(String name) throws IOException {
    try (InputStream in = TypeCode.class.getResourceAsStream("runner/" + name)) {
      assertThat(in).as("runner/" + name + " on the class path").isNotNull();
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  /** The lines after the {@code # ---- title} header, up to the next such header. */
  private static List<String> section(List<String> lines, String title) {
    int start = -1;
    for (int i = 0; i < lines.size(); i++) {
      if (lines.get(i).matches("# -{8,} " + Pattern.quote(title))) {
        start = i + 1;
        break;
      }
    }
    assertThat(start).as("a '# ---- %s' section in kiln_wire.py", title).isPositive();
    int end = start;
    while (end < lines.size() && !lines.get(end).startsWith("# ----")) {
      end++;
    }
    return lines.subList(start, end);
  }

  private static Map<String, Integer> constants(List<String> lines) {
    Map<String, Integer> constants = new LinkedHashMap<>();
    for (String line : lines) {
      Matcher m = CONSTANT.matcher(line);
      if (m.matches()) {
        assertThat(constants.put(m.group(1), Integer.decode(m.group(2))))
            .as("%s defined twice", m.group(1))
            .isNull();
      }
    }
    return constants;
  }

  /** The entries of a module-level {@code NAME = {KEY: value, …}} dict, values as written. */
  private static Map<String, String> dict(List<String> lines, String name) {
    StringBuilder text = new StringBuilder();
    boolean inside = false;
    for (String line : lines) {
      inside |= line.startsWith(name + " = {");
      if (inside) {
        text.append(line.substring(line.startsWith(name) ? line.indexOf('{') + 1 : 0)).append(' ');
        if (line.contains("}")) {
          break;
        }
      }
    }
    assertThat(inside).as("a dict %s in kiln_wire.py", name).isTrue();
    Map<String, String> entries = new LinkedHashMap<>();
    Matcher m = DICT_ENTRY.matcher(text);
    while (m.find()) {
      entries.put(m.group(1), m.group(2).strip());
    }
    return entries;
  }
}
