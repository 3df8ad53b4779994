package dev.kiln.definition;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads Databend SQL files for the Python UDFs they create: every {@code CREATE [OR REPLACE]
 * FUNCTION [IF NOT EXISTS] name (TYPE, ...) RETURNS TYPE LANGUAGE python [IMPORTS = ('...', ...)]
 * [PACKAGES = ('...', ...)] HANDLER = '...' AS $$ code $$} statement, each as the ApplyUdfResource
 * spec Query sends for it. Other statements are counted and skipped. Statements end at a {@code ;}
 * outside quotes, comments and {@code $$}-quoted bodies, so a body may hold semicolons, quotes and
 * {@code $}.
 *
 * <p>Types become spec strings as Query writes them for nullable columns ({@code INT} → {@code INT
 * NULL}; {@code INT NOT NULL} → {@code INT}). Staged imports are only reachable through the
 * presigned URLs Query makes per query, so a prewarmed UDF lists none; its packages and code are
 * what it shares with the query's.
 */
public final class DatabendSql {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern CREATE_FUNCTION =
      Pattern.compile(
          "^CREATE\\s+(?:OR\\s+REPLACE\\s+)?FUNCTION\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?",
          Pattern.CASE_INSENSITIVE);
  private static final Pattern NAME = Pattern.compile("^(`[^`]+`|\"[^\"]+\"|[A-Za-z_][\\w.]*)\\s*");
  private static final Pattern RETURNS = Pattern.compile("^RETURNS\\s+", Pattern.CASE_INSENSITIVE);
  private static final Pattern LANGUAGE =
      Pattern.compile("\\bLANGUAGE\\s+(\\w+)", Pattern.CASE_INSENSITIVE);
  private static final Pattern LIST_OPTION =
      Pattern.compile("\\b(IMPORTS|PACKAGES)\\s*=\\s*\\(([^)]*)\\)", Pattern.CASE_INSENSITIVE);
  private static final Pattern HANDLER =
      Pattern.compile("\\bHANDLER\\s*=\\s*'((?:[^']|'')*)'", Pattern.CASE_INSENSITIVE);
  private static final Pattern BODY = Pattern.compile("\\bAS\\s*\\$\\$", Pattern.CASE_INSENSITIVE);
  private static final Pattern QUOTED = Pattern.compile("'((?:[^']|'')*)'");

  private DatabendSql() {}

  /** A Python UDF a file creates: its SQL name, where its statement starts, and its spec. */
  public record Function(String name, int line, String spec, int stagedImports) {}

  /** What a file holds: its Python UDFs, and how many other statements it skipped. */
  public record Script(List<Function> functions, int otherStatements) {}

  /** A statement that creates a Python UDF but cannot be read; {@link #line} is where it starts. */
  public static final class Malformed extends Exception {
    private final int line;

    Malformed(int line, String message) {
      super(message);
      this.line = line;
    }

    public int line() {
      return line;
    }
  }

  /**
   * Reads {@code sql}.
   *
   * @throws Malformed naming the first CREATE FUNCTION of a Python UDF that cannot be read
   */
  public static Script read(String sql) throws Malformed {
    List<Function> functions = new ArrayList<>();
    int others = 0;
    for (Statement s : statements(sql)) {
      Matcher create = CREATE_FUNCTION.matcher(s.text);
      Matcher language = LANGUAGE.matcher(s.head);
      if (create.find() && language.find() && language.group(1).equalsIgnoreCase("python")) {
        functions.add(function(s, create.end()));
      } else {
        others++;
      }
    }
    return new Script(List.copyOf(functions), others);
  }

  private static Function function(Statement s, int afterCreate) throws Malformed {
    String rest = s.text.substring(afterCreate);
    Matcher name = NAME.matcher(rest);
    if (!name.find()) {
      throw new Malformed(s.line, "CREATE FUNCTION: the function's name is missing");
    }
    String sqlName = name.group(1).replaceAll("^[`\"]|[`\"]$", "");
    rest = rest.substring(name.end());
    if (!rest.startsWith("(")) {
      throw new Malformed(s.line, "CREATE FUNCTION " + sqlName + ": expected (argument types)");
    }
    int close = matchingParen(rest);
    if (close < 0) {
      throw new Malformed(s.line, "CREATE FUNCTION " + sqlName + ": unbalanced parentheses");
    }
    List<String> inputs = new ArrayList<>();
    for (String t : splitTopLevel(rest.substring(1, close))) {
      inputs.add(specType(t));
    }
    rest = rest.substring(close + 1).stripLeading();
    Matcher returns = RETURNS.matcher(rest);
    if (!returns.find()) {
      throw new Malformed(s.line, "CREATE FUNCTION " + sqlName + ": RETURNS type is missing");
    }
    rest = rest.substring(returns.end());
    Matcher language = LANGUAGE.matcher(rest);
    if (!language.find()) {
      throw new Malformed(s.line, "CREATE FUNCTION " + sqlName + ": LANGUAGE is missing");
    }
    String result = specType(rest.substring(0, language.start()));
    Matcher handler = HANDLER.matcher(s.head);
    if (!handler.find()) {
      throw new Malformed(
          s.line,
          "CREATE FUNCTION "
              + sqlName
              + ": HANDLER = '...' is missing; name the Python function to call");
    }
    if (s.body == null) {
      throw new Malformed(
          s.line, "CREATE FUNCTION " + sqlName + ": the code is missing (AS $$ ... $$)");
    }
    List<String> packages = new ArrayList<>();
    int imports = 0;
    Matcher list = LIST_OPTION.matcher(s.head);
    while (list.find()) {
      Matcher q = QUOTED.matcher(list.group(2));
      while (q.find()) {
        String value = q.group(1).replace("''", "'").strip();
        if (list.group(1).equalsIgnoreCase("packages")) {
          if (!value.isEmpty()) {
            packages.add(value);
          }
        } else {
          imports++;
        }
      }
    }
    ObjectNode spec = JSON.createObjectNode();
    spec.put("version", 1);
    spec.put("kind", "udf");
    spec.put("language", "python");
    spec.put("handler", handler.group(1).replace("''", "'"));
    inputs.forEach(spec.putArray("input_types")::add);
    spec.put("result_type", result);
    spec.putArray("imports");
    packages.forEach(spec.putArray("packages")::add);
    spec.put("code", s.body);
    return new Function(sqlName, s.line, spec.toString(), imports);
  }

  /** A SQL type as Query writes it in a spec: nullable unless NOT NULL. */
  static String specType(String sql) {
    String t = sql.strip().replaceAll("\\s+", " ").toUpperCase(Locale.ROOT);
    if (t.endsWith(" NOT NULL")) {
      return t.substring(0, t.length() - " NOT NULL".length()).strip();
    }
    return t.endsWith(" NULL") ? t : t + " NULL";
  }

  private static int matchingParen(String s) {
    int depth = 0;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '(') {
        depth++;
      } else if (c == ')' && --depth == 0) {
        return i;
      }
    }
    return -1;
  }

  private static List<String> splitTopLevel(String s) {
    List<String> parts = new ArrayList<>();
    int depth = 0;
    int start = 0;
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      if (c == '(') {
        depth++;
      } else if (c == ')') {
        depth--;
      } else if (c == ',' && depth == 0) {
        parts.add(s.substring(start, i));
        start = i + 1;
      }
    }
    if (!s.substring(start).isBlank()) {
      parts.add(s.substring(start));
    }
    return parts;
  }

  /**
   * One statement: its text with comments removed and its {@code $$} body cut out (kept apart), and
   * the line it starts on.
   */
  private record Statement(String text, String body, int line, String head) {
    /** {@code head}: the text before the body, where the options are. */
    Statement(String text, String body, int line) {
      this(text, body, line, headOf(text));
    }

    private static String headOf(String text) {
      Matcher m = BODY.matcher(text);
      return m.find() ? text.substring(0, m.start()) : text;
    }
  }

  private static List<Statement> statements(String sql) throws Malformed {
    List<Statement> out = new ArrayList<>();
    StringBuilder text = new StringBuilder();
    String body = null;
    int line = 1;
    int startLine = -1;
    int i = 0;
    while (i < sql.length()) {
      char c = sql.charAt(i);
      if (c == '\n') {
        line++;
      }
      if (c == '-' && sql.startsWith("--", i)) {
        int end = sql.indexOf('\n', i);
        i = end < 0 ? sql.length() : end;
        continue;
      }
      if (c == '/' && sql.startsWith("/*", i)) {
        int end = sql.indexOf("*/", i + 2);
        int stop = end < 0 ? sql.length() : end + 2;
        line += count(sql, i, stop, '\n');
        text.append(' ');
        i = stop;
        continue;
      }
      if (startLine < 0 && !Character.isWhitespace(c) && c != ';') {
        startLine = line;
      }
      if (c == '$' && sql.startsWith("$$", i)) {
        int end = sql.indexOf("$$", i + 2);
        if (end < 0) {
          throw new Malformed(startLine, "a $$-quoted body is not closed");
        }
        body = sql.substring(i + 2, end);
        line += count(sql, i, end, '\n');
        text.append("$$ $$");
        i = end + 2;
        continue;
      }
      if (c == '\'' || c == '"' || c == '`') {
        int end = i + 1;
        while (end < sql.length()) {
          if (sql.charAt(end) == c) {
            if (end + 1 < sql.length() && sql.charAt(end + 1) == c) {
              end += 2;
              continue;
            }
            break;
          }
          end++;
        }
        if (end >= sql.length()) {
          throw new Malformed(startLine, "a " + c + "-quoted string is not closed");
        }
        text.append(sql, i, end + 1);
        line += count(sql, i, end, '\n');
        i = end + 1;
        continue;
      }
      if (c == ';') {
        add(out, text, body, startLine);
        text.setLength(0);
        body = null;
        startLine = -1;
        i++;
        continue;
      }
      text.append(c);
      i++;
    }
    add(out, text, body, startLine);
    return out;
  }

  private static void add(List<Statement> out, StringBuilder text, String body, int line) {
    String t = text.toString().strip();
    if (!t.isEmpty()) {
      out.add(new Statement(t, body, line));
    }
  }

  private static int count(String s, int from, int to, char c) {
    int n = 0;
    for (int i = from; i < to; i++) {
      if (s.charAt(i) == c) {
        n++;
      }
    }
    return n;
  }
}
