package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A PEP 508 environment marker ({@code python_version >= "3.8" and extra == "test"}), parsed into a
 * small tree and evaluated against a marker environment.
 */
final class Marker {
  /** The variables PEP 508 defines, and the legacy dotted spellings that mean the same. */
  private static final Map<String, String> VARIABLES =
      Map.ofEntries(
          Map.entry("python_version", "python_version"),
          Map.entry("python_full_version", "python_full_version"),
          Map.entry("os_name", "os_name"),
          Map.entry("sys_platform", "sys_platform"),
          Map.entry("platform_release", "platform_release"),
          Map.entry("platform_system", "platform_system"),
          Map.entry("platform_version", "platform_version"),
          Map.entry("platform_machine", "platform_machine"),
          Map.entry("platform_python_implementation", "platform_python_implementation"),
          Map.entry("implementation_name", "implementation_name"),
          Map.entry("implementation_version", "implementation_version"),
          Map.entry("extra", "extra"),
          Map.entry("os.name", "os_name"),
          Map.entry("sys.platform", "sys_platform"),
          Map.entry("platform.version", "platform_version"),
          Map.entry("platform.machine", "platform_machine"),
          Map.entry("platform.python_implementation", "platform_python_implementation"),
          Map.entry("python_implementation", "platform_python_implementation"));

  private static final Set<String> VERSION_OPS =
      Set.of("===", "==", "!=", "<=", ">=", "~=", "<", ">");

  private sealed interface Node permits Or, And, Compare {}

  private record Or(List<Node> parts) implements Node {}

  private record And(List<Node> parts) implements Node {}

  /** One side of a comparison: a variable or a quoted string. */
  private record Value(String variable, String literal) {
    String resolve(Map<String, String> env) {
      return variable == null ? literal : env.getOrDefault(variable, "");
    }

    @Override
    public String toString() {
      if (variable != null) {
        return variable;
      }
      return literal.contains("\"") ? "'" + literal + "'" : "\"" + literal + "\"";
    }
  }

  private record Compare(Value left, String op, Value right) implements Node {}

  private final Node root;
  private final String canonical;

  private Marker(Node root) {
    this.root = root;
    this.canonical = render(root, false);
  }

  /** Parses a marker expression; the message says what is wrong and where. */
  static Marker parse(String text) throws KilnException {
    Parser p = new Parser(text);
    Node n = p.or();
    p.skipSpace();
    if (p.pos < text.length()) {
      throw p.error("unexpected '" + text.substring(p.pos) + "'");
    }
    return new Marker(n);
  }

  /** Evaluates with {@code env} (PEP 508 variables); {@code extra} is taken from {@code env}. */
  boolean evaluate(Map<String, String> env) {
    return eval(root, env);
  }

  /** Whether the marker mentions the {@code extra} variable. */
  boolean mentionsExtra() {
    return canonical.contains("extra");
  }

  private static boolean eval(Node n, Map<String, String> env) {
    return switch (n) {
      case Or or -> or.parts().stream().anyMatch(p -> eval(p, env));
      case And and -> and.parts().stream().allMatch(p -> eval(p, env));
      case Compare c -> compare(c, env);
    };
  }

  private static boolean compare(Compare c, Map<String, String> env) {
    String l = c.left().resolve(env);
    String r = c.right().resolve(env);
    boolean isExtra = "extra".equals(c.left().variable()) || "extra".equals(c.right().variable());
    if (isExtra) {
      // Extra names compare normalised, so 'Extra == "Foo_Bar"' matches the extra foo-bar.
      l = Requirement.normalizeName(l);
      r = Requirement.normalizeName(r);
    }
    switch (c.op()) {
      case "in":
        return r.contains(l);
      case "not in":
        return !r.contains(l);
      default:
        break;
    }
    // PEP 508: PEP 440 rules when both sides are versions, else Python's string comparison.
    if (!isExtra) {
      Version lv = Version.tryParse(l);
      if (lv != null) {
        try {
          Specifier s = Specifier.parse(c.op() + r);
          return s.contains(lv);
        } catch (KilnException notAVersion) {
          // fall through to the string comparison
        }
      }
    }
    int cmp = l.compareTo(r);
    return switch (c.op()) {
      case "==", "===" -> cmp == 0;
      case "!=" -> cmp != 0;
      case "<" -> cmp < 0;
      case "<=" -> cmp <= 0;
      case ">" -> cmp > 0;
      case ">=" -> cmp >= 0;
      default -> false; // '~=' between non-versions has no meaning: the marker does not match
    };
  }

  private static String render(Node n, boolean nested) {
    return switch (n) {
      case Or or -> {
        List<String> parts = new ArrayList<>();
        or.parts().forEach(p -> parts.add(render(p, true)));
        String s = String.join(" or ", parts);
        yield nested ? "(" + s + ")" : s;
      }
      case And and -> {
        List<String> parts = new ArrayList<>();
        and.parts().forEach(p -> parts.add(render(p, true)));
        String s = String.join(" and ", parts);
        yield nested ? "(" + s + ")" : s;
      }
      case Compare c -> c.left() + " " + c.op() + " " + c.right();
    };
  }

  /**
   * Normalised text: canonical variable names, double quotes, single spaces, needed parentheses.
   */
  @Override
  public String toString() {
    return canonical;
  }

  /** A recursive-descent parser over the marker grammar of PEP 508. */
  private static final class Parser {
    private final String text;
    private int pos;

    Parser(String text) {
      this.text = text;
    }

    Node or() throws KilnException {
      List<Node> parts = new ArrayList<>();
      parts.add(and());
      while (keyword("or")) {
        parts.add(and());
      }
      return parts.size() == 1 ? parts.get(0) : new Or(flatten(parts, true));
    }

    Node and() throws KilnException {
      List<Node> parts = new ArrayList<>();
      parts.add(atom());
      while (keyword("and")) {
        parts.add(atom());
      }
      return parts.size() == 1 ? parts.get(0) : new And(flatten(parts, false));
    }

    private static List<Node> flatten(List<Node> parts, boolean or) {
      List<Node> out = new ArrayList<>();
      for (Node p : parts) {
        if (or && p instanceof Or o) {
          out.addAll(o.parts());
        } else if (!or && p instanceof And a) {
          out.addAll(a.parts());
        } else {
          out.add(p);
        }
      }
      return out;
    }

    Node atom() throws KilnException {
      skipSpace();
      if (pos < text.length() && text.charAt(pos) == '(') {
        pos++;
        Node inner = or();
        skipSpace();
        if (pos >= text.length() || text.charAt(pos) != ')') {
          throw error("missing ')'");
        }
        pos++;
        return inner;
      }
      Value left = value();
      String op = operator();
      Value right = value();
      if (left.variable() == null && right.variable() == null) {
        throw error("a comparison needs a variable on one side, e.g. python_version >= \"3.8\"");
      }
      return new Compare(left, op, right);
    }

    Value value() throws KilnException {
      skipSpace();
      if (pos >= text.length()) {
        throw error("expected a variable or a quoted string at the end");
      }
      char ch = text.charAt(pos);
      if (ch == '"' || ch == '\'') {
        int end = text.indexOf(ch, pos + 1);
        if (end < 0) {
          throw error("unterminated string");
        }
        String s = text.substring(pos + 1, end);
        pos = end + 1;
        return new Value(null, s);
      }
      int start = pos;
      while (pos < text.length()
          && (Character.isLetterOrDigit(text.charAt(pos))
              || text.charAt(pos) == '_'
              || text.charAt(pos) == '.')) {
        pos++;
      }
      String name = text.substring(start, pos);
      if (name.isEmpty()) {
        throw error("expected a variable or a quoted string");
      }
      String canonical = VARIABLES.get(name);
      if (canonical == null) {
        pos = start;
        throw error(
            "unknown marker variable '"
                + name
                + "' (known: python_version, python_full_version,"
                + " sys_platform, platform_machine, platform_system, os_name,"
                + " platform_python_implementation, implementation_name, extra, ...)");
      }
      return new Value(canonical, null);
    }

    String operator() throws KilnException {
      skipSpace();
      for (String op : List.of("===", "==", "!=", "<=", ">=", "~=", "<", ">")) {
        if (text.startsWith(op, pos)) {
          pos += op.length();
          return op;
        }
      }
      if (keyword("in")) {
        return "in";
      }
      int save = pos;
      if (keyword("not")) {
        if (keyword("in")) {
          return "not in";
        }
        pos = save;
      }
      throw error(
          "expected a comparison operator (" + String.join(", ", VERSION_OPS) + ", in, not in)");
    }

    boolean keyword(String word) {
      skipSpace();
      if (text.startsWith(word, pos)) {
        int end = pos + word.length();
        boolean boundary =
            end >= text.length()
                || !(Character.isLetterOrDigit(text.charAt(end)) || text.charAt(end) == '_');
        if (boundary) {
          pos = end;
          return true;
        }
      }
      return false;
    }

    void skipSpace() {
      while (pos < text.length() && Character.isWhitespace(text.charAt(pos))) {
        pos++;
      }
    }

    KilnException error(String problem) {
      return new KilnException(
          ErrorCode.INVALID_REQUIREMENT,
          "invalid marker '"
              + text.strip()
              + "': "
              + problem
              + " (at character "
              + (pos + 1)
              + ")");
    }
  }
}
