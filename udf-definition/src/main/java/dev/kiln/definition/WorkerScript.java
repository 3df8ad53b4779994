package dev.kiln.definition;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Reads the bash script of a {@code CreateWorker} request into a {@link UdfDefinition}, as text:
 * the script is never run. Databend Query renders it from fixed templates (preamble, an optional
 * {@code pip install} line, an optional imports block, the code and a {@code databend-udf} server
 * stub in quoted heredocs, then {@code exec}), so every top-level line must be one of those; an
 * unknown command could change what the UDF runs with, and Kiln would not reproduce it.
 *
 * <p>The facts found (code, handler, types, packages, import locations) become a JSON spec tree
 * validated by {@link SpecParser}, so the {@link RuntimeSpec} and its content key are what the JSON
 * front door gives for the same UDF, and bad types or handlers are worded the same way.
 */
final class WorkerScript {
  private static final String CONTEXT = "invalid CreateWorker script";
  private static final String ACCEPTED =
      "; Kiln accepts scripts rendered by Databend Query's sandbox-UDF templates";
  private static final List<String> PREAMBLE =
      List.of(
          "#!/usr/bin/env bash",
          "set -euo pipefail",
          "WORKDIR=/app",
          "mkdir -p \"$WORKDIR\"",
          "cd \"$WORKDIR\"");
  private static final String PIP = "python -m pip install --no-cache-dir";
  private static final String IMPORTS_DIR = "mkdir -p /app/imports";
  private static final String DOWNLOADER = "python - <<'PY'";
  private static final String DOWNLOADER_END = "PY";
  private static final String EXEC = "exec python /app/server.py";
  private static final Pattern HEREDOC = Pattern.compile("cat <<'([^'\\s]+)' > (\\S+)");
  private static final String IMPORTS_SHAPE =
      "imports.json is not a JSON array of {location, url, headers}";

  /** A Python double-quoted literal as Query writes it: only {@code \\} and {@code \"} escaped. */
  private static final String LITERAL = "\"((?:[^\"\\\\\\n]|\\\\.)*)\"";

  private static final Pattern LITERAL_ITEM = Pattern.compile(LITERAL);
  private static final String LITERAL_NC = "\"(?:[^\"\\\\\\n]|\\\\.)*\"";
  private static final Pattern DECORATOR =
      Pattern.compile(
          "udf_decorator\\(\\s*name="
              + LITERAL
              + "\\s*,\\s*input_types=\\[\\s*((?:"
              + LITERAL_NC
              + "(?:\\s*,\\s*"
              + LITERAL_NC
              + ")*)?)\\s*\\]\\s*,\\s*result_type="
              + LITERAL
              + "\\s*\\)");
  private static final Pattern GETATTR = Pattern.compile("getattr\\(udf,\\s*" + LITERAL + "\\)");
  private static final ObjectMapper MAPPER =
      JsonMapper.builder()
          .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .build();

  private final String[] lines;
  private int pos;

  private WorkerScript(String script) {
    this.lines = script.split("\n", -1);
  }

  /** The definition the script describes; see {@link UdfDefinition#fromWorkerScript}. */
  static UdfDefinition parse(String script) throws KilnException {
    if (script == null || script.isBlank()) {
      throw shape("the script is empty");
    }
    WorkerScript reader = new WorkerScript(script);
    reader.preamble();
    List<String> packages = reader.packages();
    List<StagedImport> imports = reader.imports();
    String code = reader.heredoc("/app/udf.py", "UDF_CODE");
    String stub = reader.heredoc("/app/server.py", "UDF_SERVER");
    reader.end();
    return definition(code, stub, packages, imports);
  }

  private static UdfDefinition definition(
      String code, String stub, List<String> packages, List<StagedImport> imports)
      throws KilnException {
    Matcher call = DECORATOR.matcher(stub);
    if (!call.find()) {
      throw shape("the server stub's udf_decorator(...) call was not found");
    }
    String handler = literal(call.group(1));
    List<String> inputTypes = new ArrayList<>();
    Matcher item = LITERAL_ITEM.matcher(call.group(2));
    while (item.find()) {
      inputTypes.add(literal(item.group(1)));
    }
    String resultType = literal(call.group(3));
    if (call.find()) {
      throw shape("the server stub has more than one udf_decorator(...) call");
    }
    Matcher lookup = GETATTR.matcher(stub);
    if (!lookup.find()) {
      throw shape("the server stub's getattr(udf, \"...\") call was not found");
    }
    String looked = literal(lookup.group(1));
    if (!looked.equals(handler)) {
      throw shape(
          "the server stub's getattr(udf, ...) names '"
              + looked
              + "' but its udf_decorator(...) names '"
              + handler
              + "'");
    }

    ObjectNode tree = MAPPER.createObjectNode();
    tree.put("version", 1).put("kind", "udf").put("language", "python").put("handler", handler);
    ArrayNode inputs = tree.putArray("input_types");
    inputTypes.forEach(inputs::add);
    tree.put("result_type", resultType);
    ArrayNode locations = tree.putArray("imports");
    imports.forEach(imp -> locations.add(imp.location()));
    ArrayNode pkgs = tree.putArray("packages");
    packages.forEach(pkgs::add);
    tree.put("code", code);
    RuntimeSpec spec;
    try {
      spec = SpecParser.parse(tree);
      HandlerCheck.requireDefined(spec.code(), spec.handler());
    } catch (KilnException e) {
      throw e.in(CONTEXT);
    }
    List<PackageRequirement> requirements = new ArrayList<>();
    for (int i = 0; i < packages.size(); i++) {
      requirements.add(
          new PackageRequirement(
              packages.get(i), "the script's pip install line, package " + (i + 1)));
    }
    return new UdfDefinition(spec, requirements, imports);
  }

  /** The fixed first lines: shebang, strict mode, the work directory. */
  private void preamble() throws KilnException {
    for (String expected : PREAMBLE) {
      if (pos >= lines.length || !lines[pos].equals(expected)) {
        throw unexpected("'" + expected + "'");
      }
      pos++;
    }
  }

  /** The tokens of the {@code pip install} line, or none when the UDF has no packages. */
  private List<String> packages() throws KilnException {
    skipBlank();
    if (pos >= lines.length || !(lines[pos].equals(PIP) || lines[pos].startsWith(PIP + " "))) {
      return List.of();
    }
    String rest = lines[pos].substring(PIP.length()).strip();
    if (rest.isEmpty()) {
      throw shape("the pip install line at line " + (pos + 1) + " names no package");
    }
    pos++;
    return List.of(rest.split("\\s+"));
  }

  /** The imports block: the imports.json heredoc, then the downloader that Kiln replaces. */
  private List<StagedImport> imports() throws KilnException {
    skipBlank();
    if (pos >= lines.length || !lines[pos].equals(IMPORTS_DIR)) {
      return List.of();
    }
    pos++;
    List<StagedImport> imports = importsJson(heredoc("/app/imports.json", "UDF_IMPORTS"));
    skipBlank();
    if (pos >= lines.length || !lines[pos].equals(DOWNLOADER)) {
      throw unexpected("the imports downloader (" + DOWNLOADER + ")");
    }
    int start = pos + 1;
    do {
      pos++;
    } while (pos < lines.length && !lines[pos].equals(DOWNLOADER_END));
    if (pos >= lines.length) {
      throw shape(
          "the imports downloader heredoc at line " + start + " is not closed by a line 'PY'");
    }
    pos++;
    return imports;
  }

  /**
   * The body of the quoted heredoc that writes {@code path}, whose marker is {@code base} or {@code
   * base_N} (Query appends a suffix until the marker occurs in no heredoc's content), verbatim: the
   * lines up to the one that is exactly the marker, without the newline before it.
   */
  private String heredoc(String path, String base) throws KilnException {
    skipBlank();
    String what = "the '" + path + "' heredoc";
    String missing = "the script has no '" + path + "' heredoc";
    if (pos >= lines.length) {
      throw shape(missing);
    }
    Matcher header = HEREDOC.matcher(lines[pos]);
    if (!header.matches() || !header.group(2).equals(path)) {
      if (!mentions("> " + path)) {
        throw shape(missing);
      }
      throw unexpected(what + " (cat <<'" + base + "' > " + path + ")");
    }
    String marker = header.group(1);
    if (!marker.matches(Pattern.quote(base) + "(_[1-9][0-9]*)?")) {
      throw shape(
          what
              + " at line "
              + (pos + 1)
              + " ends at '"
              + excerpt(marker)
              + "', not at "
              + base
              + " or "
              + base
              + "_<n>");
    }
    int start = ++pos;
    while (pos < lines.length && !lines[pos].equals(marker)) {
      pos++;
    }
    if (pos >= lines.length) {
      throw shape(what + " at line " + start + " is not closed by a line '" + marker + "'");
    }
    String body = String.join("\n", List.of(lines).subList(start, pos));
    pos++;
    return body;
  }

  /** After the server stub: {@code exec python /app/server.py}, then nothing but blank lines. */
  private void end() throws KilnException {
    skipBlank();
    if (pos >= lines.length || !lines[pos].equals(EXEC)) {
      throw unexpected("'" + EXEC + "'");
    }
    pos++;
    skipBlank();
    if (pos < lines.length) {
      throw unexpected("the end of the script");
    }
  }

  private static List<StagedImport> importsJson(String body) throws KilnException {
    JsonNode root;
    try {
      root = MAPPER.readTree(body);
    } catch (JsonProcessingException e) {
      // Jackson's message may quote the JSON, whose URLs are credentials: say where, not what.
      throw shape(
          IMPORTS_SHAPE
              + ": it is not valid JSON (line "
              + e.getLocation().getLineNr()
              + ", column "
              + e.getLocation().getColumnNr()
              + ")");
    }
    if (root == null || !root.isArray()) {
      throw shape(IMPORTS_SHAPE);
    }
    List<StagedImport> out = new ArrayList<>();
    for (int i = 0; i < root.size(); i++) {
      JsonNode item = root.get(i);
      if (!item.isObject()) {
        throw shape(IMPORTS_SHAPE + ": item " + i + " is not an object");
      }
      String location = requiredText(item, "location", i);
      String url = requiredText(item, "url", i);
      Map<String, String> headers = new LinkedHashMap<>();
      JsonNode h = item.get("headers");
      if (h != null && !h.isNull()) {
        if (!h.isObject()) {
          throw shape(IMPORTS_SHAPE + ": item " + i + "'s \"headers\" is not an object");
        }
        for (Map.Entry<String, JsonNode> header : h.properties()) {
          if (!header.getValue().isTextual()) {
            throw shape(IMPORTS_SHAPE + ": item " + i + "'s header values must be strings");
          }
          headers.put(header.getKey(), header.getValue().textValue());
        }
      }
      out.add(new StagedImport(location, url, headers, ""));
    }
    return out;
  }

  private static String requiredText(JsonNode item, String field, int i) throws KilnException {
    JsonNode n = item.get(field);
    if (n == null || !n.isTextual() || n.textValue().isBlank()) {
      throw shape(IMPORTS_SHAPE + ": item " + i + " has no \"" + field + "\" string");
    }
    return n.textValue();
  }

  /** The value of a literal's body: {@code \\} and {@code \"} are the only escapes Query writes. */
  private static String literal(String body) throws KilnException {
    StringBuilder out = new StringBuilder(body.length());
    for (int i = 0; i < body.length(); i++) {
      char c = body.charAt(i);
      if (c == '\\') {
        char next = body.charAt(++i);
        if (next != '\\' && next != '"') {
          throw shape(
              "the server stub's string \""
                  + excerpt(body)
                  + "\" has an escape other than \\\\ and \\\"");
        }
        c = next;
      }
      out.append(c);
    }
    return out.toString();
  }

  private void skipBlank() {
    while (pos < lines.length && lines[pos].isBlank()) {
      pos++;
    }
  }

  private boolean mentions(String text) {
    for (String line : lines) {
      if (line.contains(text)) {
        return true;
      }
    }
    return false;
  }

  private KilnException unexpected(String expected) {
    if (pos >= lines.length) {
      return shape("expected " + expected + " after the last line");
    }
    return shape(
        "expected " + expected + " at line " + (pos + 1) + ", found '" + excerpt(lines[pos]) + "'");
  }

  /**
   * The start of a line for a message: enough to recognise it, short of the query strings where
   * presigned URLs carry their credentials.
   */
  private static String excerpt(String text) {
    return text.length() > 40 ? text.substring(0, 37) + "..." : text;
  }

  private static KilnException shape(String what) {
    return new KilnException(ErrorCode.INVALID_SPEC, CONTEXT + ": " + what + ACCEPTED);
  }
}
