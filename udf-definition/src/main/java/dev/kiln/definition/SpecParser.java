package dev.kiln.definition;

import static dev.kiln.definition.SpecErrors.field;
import static dev.kiln.definition.SpecErrors.invalid;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Pattern;

/** Parses the JSON runtime spec and validates every key Databend sends. */
final class SpecParser {
  private static final ObjectMapper MAPPER =
      JsonMapper.builder()
          .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
          .enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS)
          .build();
  private static final Pattern RUNTIME_VERSION = Pattern.compile("3\\.\\d{1,2}(\\.\\d{1,3})?");
  private static final Pattern IDENTIFIER = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");

  private SpecParser() {}

  static RuntimeSpec parse(String json) throws KilnException {
    if (json == null || json.isBlank()) {
      throw invalid(
          "the spec is empty; expected a JSON object such as"
              + " {\"version\":1,\"kind\":\"udf\",\"language\":\"python\",\"handler\":\"f\",...}");
    }
    JsonNode root;
    try {
      root = MAPPER.readTree(json);
    } catch (JsonProcessingException e) {
      throw invalid(
          "the spec is not valid JSON: "
              + e.getOriginalMessage()
              + " (line "
              + e.getLocation().getLineNr()
              + ", column "
              + e.getLocation().getColumnNr()
              + ")");
    }
    return parse(root);
  }

  /**
   * Validates a spec already read as a JSON tree, e.g. one built from the facts of a {@code
   * CreateWorker} script, so both front doors give the same {@link RuntimeSpec} and the same
   * errors.
   */
  static RuntimeSpec parse(JsonNode root) throws KilnException {
    if (root == null || !root.isObject()) {
      throw invalid("the spec must be a JSON object, got " + describe(root));
    }

    int version = 1;
    JsonNode v = root.get("version");
    if (v != null && !v.isNull()) {
      if (!v.isIntegralNumber()) {
        throw invalid("must be the number 1, got " + describe(v)).in(field("version"));
      }
      version = v.intValue();
      if (version != 1) {
        throw invalid("version " + version + " is not supported; Kiln reads version 1")
            .in(field("version"));
      }
    }
    String kind = optionalString(root, "kind", "udf");
    if (!kind.equals("udf")) {
      throw invalid("kind '" + kind + "' is not supported; expected \"udf\"").in(field("kind"));
    }
    String language = optionalString(root, "language", "python");
    if (!language.equalsIgnoreCase("python")) {
      throw invalid("language '" + language + "' is not supported; Kiln runs \"python\"")
          .in(field("language"));
    }
    String handler = requiredString(root, "handler");
    if (!IDENTIFIER.matcher(handler).matches()) {
      throw invalid(
              "'"
                  + handler
                  + "' is not a Python identifier; name the function"
                  + " to call, e.g. \"add_one\"")
          .in(field("handler"));
    }
    List<DataType> inputTypes = new ArrayList<>();
    List<String> rawInputs = stringList(root, "input_types", true);
    for (int i = 0; i < rawInputs.size(); i++) {
      try {
        inputTypes.add(TypeParser.parse(rawInputs.get(i)));
      } catch (KilnException e) {
        throw e.in(field("input_types[" + i + "]"));
      }
    }
    DataType resultType;
    try {
      resultType = TypeParser.parse(requiredString(root, "result_type"));
    } catch (KilnException e) {
      throw e.getMessage().startsWith("spec field") ? e : e.in(field("result_type"));
    }
    List<String> imports = stringList(root, "imports", false);
    for (int i = 0; i < imports.size(); i++) {
      if (imports.get(i).isBlank()) {
        throw invalid(
                "an import location is empty; expected a stage path such as"
                    + " \"@stage/imports/helper.py\"")
            .in(field("imports[" + i + "]"));
      }
    }
    List<String> packages = stringList(root, "packages", false);
    for (int i = 0; i < packages.size(); i++) {
      if (packages.get(i).isBlank()) {
        throw invalid(
                "a package requirement is empty; expected e.g. \"numpy\" or"
                    + " \"humanize==4.9.0\"")
            .in(field("packages[" + i + "]"));
      }
    }
    String runtimeVersion =
        optionalString(root, "runtime_version", RuntimeSpec.DEFAULT_RUNTIME_VERSION);
    if (!RUNTIME_VERSION.matcher(runtimeVersion).matches()) {
      throw invalid(
              "'"
                  + runtimeVersion
                  + "' is not a Python 3 version; expected"
                  + " MAJOR.MINOR[.PATCH] such as \"3.12.2\"")
          .in(field("runtime_version"));
    }
    String code = requiredString(root, "code");
    if (code.isBlank()) {
      throw invalid("the UDF body is empty; put the Python code between $$ ... $$")
          .in(field("code"));
    }
    return new RuntimeSpec(
        version,
        kind,
        "python",
        handler,
        inputTypes,
        resultType,
        imports,
        packages,
        runtimeVersion,
        code);
  }

  static String canonicalJson(RuntimeSpec spec) {
    ObjectNode node = MAPPER.createObjectNode();
    node.put("code", spec.code());
    node.put("handler", spec.handler());
    ArrayNode imports = node.putArray("imports");
    spec.imports().forEach(imports::add);
    ArrayNode inputs = node.putArray("input_types");
    spec.inputTypes().forEach(t -> inputs.add(t.toString()));
    node.put("kind", spec.kind());
    node.put("language", spec.language());
    ArrayNode packages = node.putArray("packages");
    spec.packages().forEach(packages::add);
    node.put("result_type", spec.resultType().toString());
    node.put("runtime_version", spec.runtimeVersion());
    node.put("version", spec.version());
    try {
      return MAPPER.writeValueAsString(node);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot serialise a JSON tree", e);
    }
  }

  private static String requiredString(JsonNode root, String field) throws KilnException {
    JsonNode n = root.get(field);
    if (n == null || n.isNull()) {
      throw invalid("is missing; it is required").in(field(field));
    }
    if (!n.isTextual()) {
      throw invalid("must be a string, got " + describe(n)).in(field(field));
    }
    return n.textValue();
  }

  private static String optionalString(JsonNode root, String field, String dflt)
      throws KilnException {
    JsonNode n = root.get(field);
    if (n == null || n.isNull()) {
      return dflt;
    }
    if (!n.isTextual()) {
      throw invalid("must be a string, got " + describe(n)).in(field(field));
    }
    return n.textValue().isEmpty() ? dflt : n.textValue();
  }

  private static List<String> stringList(JsonNode root, String field, boolean required)
      throws KilnException {
    JsonNode n = root.get(field);
    if (n == null || n.isNull()) {
      if (required) {
        throw invalid("is missing; it is required (use [] for a function with no" + " arguments)")
            .in(field(field));
      }
      return List.of();
    }
    if (!n.isArray()) {
      throw invalid("must be an array of strings, got " + describe(n)).in(field(field));
    }
    List<String> out = new ArrayList<>();
    for (int i = 0; i < n.size(); i++) {
      JsonNode e = n.get(i);
      if (!e.isTextual()) {
        throw invalid("must be a string, got " + describe(e)).in(field(field + "[" + i + "]"));
      }
      out.add(e.textValue());
    }
    return out;
  }

  private static String describe(JsonNode n) {
    if (n == null || n.isMissingNode()) {
      return "nothing";
    }
    String text = n.toString();
    if (text.length() > 40) {
      text = text.substring(0, 37) + "...";
    }
    return n.getNodeType().name().toLowerCase(java.util.Locale.ROOT) + " " + text;
  }
}
