package dev.kiln.definition;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * Renders the bash script of a {@code CreateWorker} request the way Databend Query (since v1.2.883)
 * does for a sandboxed Python UDF — the inverse of {@link UdfDefinition#fromWorkerScript} — so that
 * tools ({@code kiln apply --protocol worker}) and tests can use the script front door without a
 * Query node. Written from what Query's renderer does:
 *
 * <ul>
 *   <li>a fixed preamble; then, when there are packages, one unquoted {@code python -m pip install
 *       --no-cache-dir P1 P2 …} line with the code's PEP 723 dependencies first, then PACKAGES
 *       (each trimmed, empty ones dropped); then, when there are imports, {@code mkdir -p
 *       /app/imports}, the compact JSON array {@code [{"location","url","headers"}]} (in that key
 *       order, headers sorted) in a heredoc to {@code /app/imports.json} and a Python downloader;
 *   <li>the code verbatim in a heredoc to {@code /app/udf.py}, the server stub in one to {@code
 *       /app/server.py}, then {@code exec python /app/server.py};
 *   <li>the markers {@code UDF_CODE}, {@code UDF_SERVER}, {@code UDF_IMPORTS}, each with {@code
 *       _1}, {@code _2}, … appended until it occurs in none of the code, the stub and the imports
 *       JSON (the stub mentions {@code UDF_SERVER_ADDR}, so the server's is at least {@code
 *       UDF_SERVER_1});
 *   <li>the stub's handler and types as Python double-quoted literals, escaping only {@code \} and
 *       {@code "}.
 * </ul>
 *
 * <p>The stub's and the downloader's bodies are abbreviated (Kiln never runs them), but the lines
 * around the {@code udf_decorator(...)} and {@code getattr(udf, ...)} calls keep the real shape,
 * including other calls on {@code udf} and other string literals nearby.
 */
public final class QueryScripts {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final TomlMapper TOML = new TomlMapper();

  private QueryScripts() {}

  /** A UDF to render: its code and the name of the function to call. */
  public static Udf udf(String code, String handler) {
    return new Udf(code, handler);
  }

  /** The script Query renders for one UDF; set the result type before {@link #render()}. */
  public static final class Udf {
    private final String code;
    private final String handler;
    private final List<String> inputTypes = new ArrayList<>();
    private String resultType;
    private final List<String> packages = new ArrayList<>();
    private final List<Map<String, Object>> imports = new ArrayList<>();

    private Udf(String code, String handler) {
      this.code = code;
      this.handler = handler;
    }

    /** The argument types, as Query writes them, e.g. {@code INT NULL}, {@code UINT8}. */
    public Udf inputs(String... types) {
      inputTypes.addAll(List.of(types));
      return this;
    }

    /** The result type, as Query writes it. */
    public Udf result(String type) {
      resultType = type;
      return this;
    }

    /** The UDF's PACKAGES clause (the code's PEP 723 dependencies are added before them). */
    public Udf packages(String... requirements) {
      packages.addAll(List.of(requirements));
      return this;
    }

    /** One staged import: its location, presigned URL and the headers to fetch it with. */
    public Udf addImport(String location, String url, Map<String, String> headers) {
      Map<String, Object> item = new LinkedHashMap<>();
      item.put("location", location);
      item.put("url", url);
      item.put("headers", new TreeMap<>(headers));
      imports.add(item);
      return this;
    }

    /** The script, byte for byte as Query would send it in {@code CreateWorkerRequest.script}. */
    public String render() {
      if (resultType == null) {
        throw new IllegalStateException("set the result type first");
      }
      String stub = stub(handler, inputTypes, resultType);
      String importsJson = imports.isEmpty() ? null : json(imports);
      List<String> contents = new ArrayList<>(List.of(code, stub));
      if (importsJson != null) {
        contents.add(importsJson);
      }
      List<String> all = new ArrayList<>(pep723Dependencies(code));
      all.addAll(packages);
      List<String> pip = all.stream().map(String::strip).filter(p -> !p.isEmpty()).toList();

      StringBuilder s = new StringBuilder();
      s.append("#!/usr/bin/env bash\n")
          .append("set -euo pipefail\n")
          .append("WORKDIR=/app\n")
          .append("mkdir -p \"$WORKDIR\"\n")
          .append("cd \"$WORKDIR\"\n")
          .append('\n');
      if (!pip.isEmpty()) {
        s.append("python -m pip install --no-cache-dir ").append(String.join(" ", pip));
      }
      s.append('\n');
      if (importsJson != null) {
        String marker = marker("UDF_IMPORTS", contents);
        s.append("mkdir -p /app/imports\n")
            .append("cat <<'")
            .append(marker)
            .append("' > /app/imports.json\n")
            .append(importsJson)
            .append('\n')
            .append(marker)
            .append('\n')
            .append(DOWNLOADER)
            .append("\n\n");
      }
      s.append('\n').append('\n');
      String codeMarker = marker("UDF_CODE", contents);
      String serverMarker = marker("UDF_SERVER", contents);
      s.append("cat <<'").append(codeMarker).append("' > /app/udf.py\n");
      s.append(code).append('\n').append(codeMarker).append('\n');
      s.append("cat <<'").append(serverMarker).append("' > /app/server.py\n");
      s.append(stub).append('\n').append(serverMarker).append('\n');
      s.append("exec python /app/server.py\n");
      return s.toString();
    }
  }

  /** The first of {@code base}, {@code base_1}, {@code base_2}, … that no content contains. */
  static String marker(String base, List<String> contents) {
    String marker = base;
    for (int n = 1; contains(contents, marker); n++) {
      marker = base + "_" + n;
    }
    return marker;
  }

  private static boolean contains(List<String> contents, String marker) {
    return contents.stream().anyMatch(c -> c.contains(marker));
  }

  /**
   * A Python double-quoted literal as Query writes it: {@code \} and {@code "} escaped, no more.
   */
  static String literal(String value) {
    return "\"" + value.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }

  /**
   * The dependencies of the code's {@code # /// script} block as Query reads them: the lines after
   * it up to the next line starting {@code # ///}, each stripped of its leading {@code #}s and
   * whitespace, read as TOML.
   */
  static List<String> pep723Dependencies(String code) {
    StringBuilder toml = new StringBuilder();
    boolean inBlock = false;
    for (String line : code.split("\r?\n", -1)) {
      if (inBlock) {
        if (line.startsWith("# ///")) {
          break;
        }
        toml.append(line.replaceFirst("^#+", "").strip()).append('\n');
      } else if (line.startsWith("# /// script")) {
        inBlock = true;
      }
    }
    try {
      JsonNode deps = TOML.readTree(toml.toString()).path("dependencies");
      List<String> out = new ArrayList<>();
      deps.forEach(d -> out.add(d.isTextual() ? d.textValue() : null));
      return out.stream().filter(d -> d != null).toList();
    } catch (JsonProcessingException e) {
      throw new IllegalArgumentException("Query rejects this PEP 723 block as TOML", e);
    }
  }

  private static String json(Object value) {
    try {
      return JSON.writeValueAsString(value);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException(e);
    }
  }

  private static String stub(String handler, List<String> inputTypes, String resultType) {
    String inputs =
        "[" + String.join(", ", inputTypes.stream().map(QueryScripts::literal).toList()) + "]";
    return String.join(
        "\n",
        "import importlib",
        "import os",
        "import sys",
        "import threading",
        "from databend_udf import UDFServer, udf as udf_decorator",
        "",
        "IMPORTS_DIR = \"/app/imports\"",
        "sys._xoptions[\"databend_import_directory\"] = IMPORTS_DIR",
        "STATUS_ADDR = os.getenv(\"RESOURCE_STATUS_ADDR\", \"0.0.0.0:8080\")",
        "",
        "# Abbreviated: the status server (/health, /stats), the request counter and the code",
        "# that puts IMPORTS_DIR and its .zip/.whl/.egg files on sys.path.",
        "",
        "def _load_udf():",
        "    return importlib.import_module(\"udf\")",
        "",
        "def _wrap_udf(func):",
        "    return udf_decorator(name="
            + literal(handler)
            + ", input_types="
            + inputs
            + ", result_type="
            + literal(resultType)
            + ")(func)",
        "",
        "def _track_udf(udf):",
        "    if hasattr(udf, \"eval_batch\"):",
        "        return udf",
        "    return udf",
        "",
        "def main():",
        "    udf = _load_udf()",
        "    address = os.getenv(\"UDF_SERVER_ADDR\", \"0.0.0.0:8815\")",
        "    server = UDFServer(location=address)",
        "    func = getattr(udf, " + literal(handler) + ")",
        "    if not hasattr(func, \"_name\"):",
        "        func = _wrap_udf(func)",
        "    func = _track_udf(func)",
        "    server.add_function(func)",
        "    server.serve()",
        "",
        "if __name__ == \"__main__\":",
        "    main()",
        "");
  }

  /** The imports downloader, abbreviated; ends with the {@code PY} line. */
  private static final String DOWNLOADER =
      String.join(
          "\n",
          "python - <<'PY'",
          "import json",
          "import os",
          "import urllib.request",
          "",
          "# Abbreviated: saves each import's URL, fetched with its headers (30 s timeout), to",
          "# /app/imports/<basename of its location>.",
          "with open(\"/app/imports.json\", \"r\") as f:",
          "    imports = json.load(f)",
          "",
          "for index, item in enumerate(imports):",
          "    pass",
          "PY");
}
