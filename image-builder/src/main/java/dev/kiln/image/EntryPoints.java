package dev.kiln.image;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The {@code console_scripts} and {@code gui_scripts} of a wheel's {@code entry_points.txt}, and
 * the launcher script written for each (what pip writes on POSIX: import the object, call it, exit
 * with its result).
 */
final class EntryPoints {
  /** One script: its file name and the {@code module:attribute} it calls. */
  record Script(String name, String module, String attribute) {}

  private static final Pattern DOTTED = Pattern.compile("(?U)[\\p{L}_][\\w]*(\\.[\\p{L}_][\\w]*)*");

  /** {@code module:attr.sub [extras]}; extras only select requirements, so they are ignored. */
  private static final Pattern REFERENCE =
      Pattern.compile("(?U)\\s*([^:\\[\\s]+)\\s*:\\s*([^\\[\\s]+)\\s*(\\[[^\\]]*\\])?\\s*");

  private EntryPoints() {}

  /** The scripts declared in {@code entry_points.txt} (INI syntax, keys keep their case). */
  static List<Script> scripts(String wheel, String text) throws InvalidWheelException {
    List<Script> scripts = new ArrayList<>();
    String section = null;
    for (String raw : text.split("\r?\n|\r")) {
      String line = raw.strip();
      if (line.isEmpty() || line.startsWith("#") || line.startsWith(";")) {
        continue;
      }
      if (line.startsWith("[") && line.endsWith("]")) {
        section = line.substring(1, line.length() - 1).strip();
        continue;
      }
      if (!"console_scripts".equals(section) && !"gui_scripts".equals(section)) {
        continue;
      }
      int sep = separator(line);
      if (sep <= 0) {
        throw invalid(wheel, "entry point line '" + line + "' is not 'name = module:attribute'");
      }
      String name = line.substring(0, sep).strip();
      String value = line.substring(sep + 1).strip();
      if (name.isEmpty()
          || name.equals(".")
          || name.equals("..")
          || name.contains("/")
          || name.contains("\\")
          || name.chars().anyMatch(c -> c < 0x20)) {
        throw invalid(wheel, "entry point name '" + name + "' is not a valid script file name");
      }
      Matcher m = REFERENCE.matcher(value);
      if (!m.matches()
          || !DOTTED.matcher(m.group(1)).matches()
          || !DOTTED.matcher(m.group(2)).matches()) {
        throw invalid(
            wheel,
            "entry point "
                + name
                + " = '"
                + value
                + "' is not 'module:attribute' (a script must name the callable it runs)");
      }
      scripts.add(new Script(name, m.group(1), m.group(2)));
    }
    return scripts;
  }

  /** The launcher for one script, run by {@code interpreter}. */
  static String launcher(Script script, String interpreter) {
    String importName = script.attribute().split("\\.", 2)[0];
    return "#!"
        + interpreter
        + "\n"
        + "# -*- coding: utf-8 -*-\n"
        + "import re\n"
        + "import sys\n"
        + "from "
        + script.module()
        + " import "
        + importName
        + "\n"
        + "if __name__ == \"__main__\":\n"
        + "    sys.argv[0] = re.sub(r\"(-script\\.pyw|\\.exe)?$\", \"\", sys.argv[0])\n"
        + "    sys.exit("
        + script.attribute()
        + "())\n";
  }

  /** configparser accepts both {@code =} and {@code :}; the first of them separates the key. */
  private static int separator(String line) {
    int eq = line.indexOf('=');
    int colon = line.indexOf(':');
    if (eq < 0) {
      return colon;
    }
    return colon < 0 ? eq : Math.min(eq, colon);
  }

  private static InvalidWheelException invalid(String wheel, String problem) {
    return new InvalidWheelException(
        "wheel " + wheel + " has a bad entry_points.txt: " + problem + "; fix the wheel");
  }
}
