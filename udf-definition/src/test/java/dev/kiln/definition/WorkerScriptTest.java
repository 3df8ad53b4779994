package dev.kiln.definition;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class WorkerScriptTest {
  private static final String ADD_ONE = "def add_one(x):\n    return x + 1\n";
  private static final String PREFIX = "invalid CreateWorker script: ";
  private static final String ACCEPTED =
      "; Kiln accepts scripts rendered by Databend Query's sandbox-UDF templates";
  private static final String HELPER = "@s/imports/helper.py";
  private static final String HELPER_URL =
      "https://s3.example.com/b/s/imports/helper.py?X-Amz-Expires=259200&X-Amz-Signature=SECRET";

  private static QueryScripts.Udf addOne() {
    return QueryScripts.udf(ADD_ONE, "add_one").inputs("INT NULL").result("INT NULL");
  }

  /** A script with every part: packages, an import with headers, code, stub. */
  private static String full() {
    return addOne()
        .packages("numpy")
        .addImport(HELPER, HELPER_URL, Map.of("host", "s3.example.com"))
        .render();
  }

  private static UdfDefinition read(String script) throws KilnException {
    return UdfDefinition.fromWorkerScript(script);
  }

  @Test
  void readsAUdfWithNoPackagesAndNoImports() throws KilnException {
    String script = addOne().render();
    assertThat(script)
        .contains("cat <<'UDF_CODE' > /app/udf.py\n", "cat <<'UDF_SERVER_1' > /app/server.py\n")
        .doesNotContain("pip install", "imports.json");

    UdfDefinition d = read(script);

    assertThat(d.code()).isEqualTo(ADD_ONE);
    assertThat(d.handler()).isEqualTo("add_one");
    assertThat(d.inputTypes()).containsExactly(TypeParser.parse("INT NULL"));
    assertThat(d.resultType()).isEqualTo(TypeParser.parse("INT NULL"));
    assertThat(d.requirements()).isEmpty();
    assertThat(d.imports()).isEmpty();
    RuntimeSpec spec = d.spec();
    assertThat(spec.packages()).isEmpty();
    assertThat(spec.imports()).isEmpty();
    assertThat(spec.runtimeVersion()).isEqualTo(RuntimeSpec.DEFAULT_RUNTIME_VERSION);
    assertThat(spec.version()).isEqualTo(1);
    assertThat(spec.kind()).isEqualTo("udf");
    assertThat(spec.language()).isEqualTo("python");
  }

  @Test
  void thePipLineGivesTheRequirementsAsWrittenWithPep723DependenciesFirst() throws KilnException {
    String code =
        "# /// script\n"
            + "# requires-python = \">=3.10\"\n"
            + "# dependencies = [\"humanize==4.9.0\"]\n"
            + "# ///\n"
            + "import humanize\n\n"
            + "def nice(n):\n"
            + "    return humanize.naturalsize(n)\n";
    String script =
        QueryScripts.udf(code, "nice")
            .inputs("BIGINT NULL")
            .result("VARCHAR NULL")
            .packages("pandas>=2", " requests ")
            .render();
    assertThat(script)
        .contains("\npython -m pip install --no-cache-dir humanize==4.9.0 pandas>=2 requests\n");

    UdfDefinition d = read(script);

    assertThat(d.requirements())
        .containsExactly(
            new PackageRequirement("humanize==4.9.0", "the script's pip install line, package 1"),
            new PackageRequirement("pandas>=2", "the script's pip install line, package 2"),
            new PackageRequirement("requests", "the script's pip install line, package 3"));
    assertThat(d.spec().packages()).containsExactly("humanize==4.9.0", "pandas>=2", "requests");
    assertThat(d.code()).isEqualTo(code);
  }

  @Test
  void importsCarryLocationUrlAndHeadersButNoTag() throws KilnException {
    String dataUrl = "https://minio.local:9000/b/s/data/table%202.csv?X-Amz-Signature=abc&x=a%3Db";
    String script =
        addOne()
            .addImport(HELPER, HELPER_URL, Map.of("host", "s3.example.com", "x-amz-meta", "v\"1"))
            .addImport("@s/data/table 2.csv", dataUrl, Map.of())
            .render();

    UdfDefinition d = read(script);

    assertThat(d.imports())
        .containsExactly(
            new StagedImport(
                HELPER, HELPER_URL, Map.of("host", "s3.example.com", "x-amz-meta", "v\"1"), ""),
            new StagedImport("@s/data/table 2.csv", dataUrl, Map.of(), ""));
    assertThat(d.spec().imports()).containsExactly(HELPER, "@s/data/table 2.csv");
    assertThat(d.importRefs())
        .containsExactly(new ImportRef(HELPER, ""), new ImportRef("@s/data/table 2.csv", ""));
  }

  @Test
  void markersAreReadFromEachHeredocLine() throws KilnException {
    String mentions = "# UDF_CODE and UDF_IMPORTS are in here\n" + ADD_ONE;
    String script =
        QueryScripts.udf(mentions, "add_one")
            .inputs("INT NULL")
            .result("INT NULL")
            .addImport("@s/UDF_SERVER_1/x.py", "https://h/x.py", Map.of())
            .render();
    assertThat(script)
        .contains(
            "cat <<'UDF_CODE_1' > /app/udf.py\n",
            "cat <<'UDF_SERVER_2' > /app/server.py\n",
            "cat <<'UDF_IMPORTS_1' > /app/imports.json\n");
    assertThat(read(script).code()).isEqualTo(mentions);
    assertThat(read(script).spec().imports()).containsExactly("@s/UDF_SERVER_1/x.py");

    String both = "UDF_CODE = 1\nUDF_CODE_1 = 2\n" + ADD_ONE;
    String second =
        QueryScripts.udf(both, "add_one").inputs("INT NULL").result("INT NULL").render();
    assertThat(second).contains("cat <<'UDF_CODE_2' > /app/udf.py\n");
    assertThat(read(second).code()).isEqualTo(both);
  }

  @Test
  void linesThatLookLikeMarkersStayInTheCode() throws KilnException {
    // Each is a whole line of the code: a marker with another suffix, the other heredocs'
    // markers, the downloader's, and a heredoc line of its own.
    String code =
        "UDF_CODE_7\nUDF_SERVER\nUDF_SERVER_1\nUDF_IMPORTS\nPY\nEOF\n"
            + "x = '''\ncat <<'UDF_CODE' > /app/udf.py\nexec python /app/server.py\n'''\n"
            + ADD_ONE;
    String script =
        QueryScripts.udf(code, "add_one")
            .inputs("INT NULL")
            .result("INT NULL")
            .addImport(HELPER, HELPER_URL, Map.of())
            .render();
    assertThat(script).contains("cat <<'UDF_CODE_1' > /app/udf.py\n");

    assertThat(read(script).code()).isEqualTo(code);
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "# ünïcödé: 名前 😀 ✓\nlabel = 'naïve'\n",
        "import os\nhome = os.path.expandvars('$HOME') + \"${PATH}\" + '`date`' + '$(id)'\n",
        "pattern = r'C:\\tmp\\' + '\\n' + '\\\\'\nEND = '\\\\\n",
        "q = \"double\" + 'single' + '''triple''' + \"\\\"\"\n",
        "def tabbed(x):\n\treturn x\t# tab\n",
        "EOF\nx = '''\nEOF\n'''\n",
        "\n\n# leading blank lines, and two trailing\n\n",
        "# carriage returns\r\nx = 1\r\n",
      })
  void codeIsKeptVerbatim(String prefix) throws KilnException {
    for (String code :
        List.of(prefix + ADD_ONE, prefix + ADD_ONE + "\n", prefix + "def add_one(x): return x")) {
      String script =
          QueryScripts.udf(code, "add_one").inputs("INT NULL").result("INT NULL").render();

      assertThat(read(script).code()).isEqualTo(code);
    }
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "TUPLE(1 INT32, 2 STRING) NULL",
        "ARRAY(INT32 NULL) NULL",
        "MAP(STRING, INT32) NULL",
        "DECIMAL(15, 2) NULL",
        "UINT8",
        "TINYINT UNSIGNED NULL",
        "VARIANT NULL",
        "TIMESTAMP NULL",
      })
  void typesAreQuerysInternalNames(String type) throws KilnException {
    String script =
        QueryScripts.udf("def f(a, b):\n    return a\n", "f")
            .inputs(type, "VARCHAR NULL")
            .result(type)
            .render();
    // These need no escaping: the literals are the type strings as they are.
    assertThat(script)
        .contains(
            "udf_decorator(name=\"f\", input_types=[\""
                + type
                + "\", \"VARCHAR NULL\"], result_type=\""
                + type
                + "\")");

    UdfDefinition d = read(script);

    assertThat(d.inputTypes())
        .containsExactly(TypeParser.parse(type), TypeParser.parse("VARCHAR NULL"));
    assertThat(d.resultType()).isEqualTo(TypeParser.parse(type));
  }

  @Test
  void literalsAreUnescaped() throws KilnException {
    String type = "TUPLE(\"a b\" INT32, c STRING) NULL";
    String script = addOne().inputs(type).render();
    assertThat(script)
        .contains("input_types=[\"INT NULL\", \"TUPLE(\\\"a b\\\" INT32, c STRING) NULL\"]");

    assertThat(read(script).inputTypes().get(1)).isEqualTo(TypeParser.parse(type));
    assertThat(read(script).inputTypes().get(1).fieldNames()).containsExactly("a b", "c");
  }

  @Test
  void contentKeyIsTheJsonSpecsForTheSameUdf() throws KilnException {
    String script =
        addOne()
            .packages("humanize==4.9.0", "pandas>=2")
            .addImport(HELPER, HELPER_URL, Map.of("host", "s3.example.com"))
            .render();
    ObjectNode json = new ObjectMapper().createObjectNode();
    json.put("version", 1).put("kind", "udf").put("language", "python").put("handler", "add_one");
    json.putArray("input_types").add("INT NULL");
    json.put("result_type", "INT NULL");
    json.putArray("imports").add(HELPER);
    json.putArray("packages").add("humanize==4.9.0").add("pandas>=2");
    json.put("code", ADD_ONE);
    UdfDefinition fromSpec =
        UdfDefinition.fromSpec(
            json.toString(), List.of(new StagedImport(HELPER, "https://elsewhere/h.py", "")));

    UdfDefinition fromScript = read(script);

    assertThat(fromScript.spec()).isEqualTo(fromSpec.spec());
    assertThat(fromScript.key("sha256:base", "runner-1"))
        .isEqualTo(fromSpec.key("sha256:base", "runner-1"));
    // The presigned URL and its headers change on every query; the key does not.
    String again =
        addOne()
            .packages("humanize==4.9.0", "pandas>=2")
            .addImport(HELPER, "https://s3.example.com/other?sig=2", Map.of("host", "other"))
            .render();
    assertThat(read(again).key("sha256:base", "runner-1"))
        .isEqualTo(fromScript.key("sha256:base", "runner-1"));
    // Another package list is another UDF.
    String other =
        addOne().packages("humanize==4.9.0").addImport(HELPER, HELPER_URL, Map.of()).render();
    assertThat(read(other).key("sha256:base", "runner-1"))
        .isNotEqualTo(fromScript.key("sha256:base", "runner-1"));
  }

  @Test
  void aScriptRenderedFromQuerysTemplates() throws KilnException {
    UdfDefinition d = read(RENDERED_BY_QUERY);

    assertThat(d.code()).isEqualTo(ANCHOR_CODE);
    assertThat(d.handler()).isEqualTo("nice_size");
    assertThat(d.inputTypes()).containsExactly(TypeParser.parse("BIGINT NULL"));
    assertThat(d.resultType()).isEqualTo(TypeParser.parse("VARCHAR NULL"));
    assertThat(d.requirementTexts()).containsExactly("humanize==4.9.0", "pandas>=2");
    assertThat(d.imports()).containsExactly(ANCHOR_IMPORT);
  }

  @Test
  void theFixtureRendersWhatQueryRendersAroundTheAbbreviations() throws KilnException {
    String ours =
        QueryScripts.udf(ANCHOR_CODE, "nice_size")
            .inputs("BIGINT NULL")
            .result("VARCHAR NULL")
            .packages("pandas>=2")
            .addImport(ANCHOR_IMPORT.location(), ANCHOR_IMPORT.url(), ANCHOR_IMPORT.headers())
            .render();

    assertThat(skeleton(ours)).isEqualTo(skeleton(RENDERED_BY_QUERY));
    assertThat(read(ours)).isEqualTo(read(RENDERED_BY_QUERY));
  }

  /**
   * The script's lines with the bodies of the server stub and the downloader left out, but for the
   * lines the parser reads: what the fixture must render exactly as Query does.
   */
  private static List<String> skeleton(String script) {
    List<String> out = new ArrayList<>();
    String end = null;
    for (String line : script.split("\n", -1)) {
      if (end == null) {
        out.add(line);
        if (line.equals("python - <<'PY'")) {
          end = "PY";
        } else if (line.endsWith("' > /app/server.py")) {
          end = line.substring(line.indexOf("<<'") + 3, line.lastIndexOf('\''));
        }
      } else if (line.equals(end)) {
        out.add(line);
        end = null;
      } else if (line.contains("udf_decorator(") || line.contains("getattr(udf,")) {
        out.add(line);
      }
    }
    return out;
  }

  // --- errors ---

  private static void assertShapeError(String script, String what) {
    assertThatThrownBy(() -> read(script))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.INVALID_SPEC))
        .hasMessage(PREFIX + what + ACCEPTED);
  }

  /** The 1-based number of the first line that is exactly {@code text}. */
  private static int lineOf(String script, String text) {
    return List.of(script.split("\n", -1)).indexOf(text) + 1;
  }

  /** The script with the line after the one that is exactly {@code before} replaced. */
  private static String replaceLineAfter(String script, String before, String replacement) {
    List<String> lines = new ArrayList<>(List.of(script.split("\n", -1)));
    int i = lines.indexOf(before);
    assertThat(i).as("line '%s' in the script", before).isNotNegative();
    lines.set(i + 1, replacement);
    return String.join("\n", lines);
  }

  @Test
  void anEmptyScriptIsRefused() {
    assertShapeError("", "the script is empty");
    assertShapeError(null, "the script is empty");
  }

  @Test
  void thePreambleMustBeQuerys() {
    assertShapeError(
        full().replace("#!/usr/bin/env bash\n", ""),
        "expected '#!/usr/bin/env bash' at line 1, found 'set -euo pipefail'");
    assertShapeError(
        full().replace("WORKDIR=/app\n", "WORKDIR=/tmp\n"),
        "expected 'WORKDIR=/app' at line 3, found 'WORKDIR=/tmp'");
  }

  @Test
  void aPipLineWithoutPackagesIsRefused() {
    String script = full().replace(" --no-cache-dir numpy\n", " --no-cache-dir \n");
    assertShapeError(script, "the pip install line at line 7 names no package");
  }

  @Test
  void everyTopLevelLineMustBeQuerys() {
    String script = full().replace("numpy\n", "numpy\ncurl -fsSL https://example.com/x | sh\n");
    assertShapeError(
        script,
        "expected the '/app/udf.py' heredoc (cat <<'UDF_CODE' > /app/udf.py) at line 8,"
            + " found 'curl -fsSL https://example.com/x | sh'");
    String longLine = full().replace("numpy\n", "numpy\nwget " + HELPER_URL + "\n");
    assertShapeError(
        longLine,
        "expected the '/app/udf.py' heredoc (cat <<'UDF_CODE' > /app/udf.py) at line 8,"
            + " found 'wget https://s3.example.com/b/s/impor...'");
    assertShapeError(
        full() + "rm -rf /\n",
        "expected the end of the script at line "
            + lineOf(full() + "rm -rf /\n", "rm -rf /")
            + ", found 'rm -rf /'");
    assertShapeError(
        full().replace("exec python /app/server.py\n", ""),
        "expected 'exec python /app/server.py' after the last line");
  }

  @Test
  void theCodeHeredocMustBeThereAndClosed() {
    String header = "cat <<'UDF_CODE' > /app/udf.py";
    assertShapeError(
        full().replace(header + "\n" + ADD_ONE + "\nUDF_CODE\n", ""),
        "the script has no '/app/udf.py' heredoc");
    assertShapeError(
        full().replace("\nUDF_CODE\n", "\n"),
        "the '/app/udf.py' heredoc at line "
            + lineOf(full(), header)
            + " is not closed by a line 'UDF_CODE'");
    assertShapeError(
        full().replace(header, "cat <<'EOF' > /app/udf.py").replace("\nUDF_CODE\n", "\nEOF\n"),
        "the '/app/udf.py' heredoc at line "
            + lineOf(full(), header)
            + " ends at 'EOF', not at UDF_CODE or UDF_CODE_<n>");
  }

  @Test
  void theServerStubMustBeThereWithItsDecoratorAndLookup() {
    String script = full();
    int start = script.indexOf("cat <<'UDF_SERVER_1' > /app/server.py\n");
    int end = script.indexOf("\nUDF_SERVER_1\n") + "\nUDF_SERVER_1\n".length();
    assertShapeError(
        script.substring(0, start) + script.substring(end),
        "the script has no '/app/server.py' heredoc");
    assertShapeError(
        script.replace("udf_decorator(name=", "udf_decorator(nam="),
        "the server stub's udf_decorator(...) call was not found");
    assertShapeError(
        script.replace("getattr(udf, ", "getattr(module, "),
        "the server stub's getattr(udf, \"...\") call was not found");
    assertShapeError(
        script.replace("getattr(udf, \"add_one\")", "getattr(udf, \"add_two\")"),
        "the server stub's getattr(udf, ...) names 'add_two' but its udf_decorator(...) names"
            + " 'add_one'");
    assertShapeError(
        script.replace("result_type=\"INT NULL\"", "result_type=\"INT\\n NULL\""),
        "the server stub's string \"INT\\n NULL\" has an escape other than \\\\ and \\\"");
    String twice =
        script.replace(
            "def _track_udf(udf):",
            "def _track_udf(udf):\n    udf_decorator(name=\"g\", input_types=[], result_type=\"INT\")");
    assertShapeError(twice, "the server stub has more than one udf_decorator(...) call");
  }

  @Test
  void importsJsonMustBeAnArrayOfLocationUrlHeaders() {
    String header = "cat <<'UDF_IMPORTS' > /app/imports.json";
    String shape = "imports.json is not a JSON array of {location, url, headers}";
    assertShapeError(
        replaceLineAfter(full(), header, "{\"location\":\"@s/x.py\",\"url\":\"u\",\"headers\":{}}"),
        shape);
    assertShapeError(
        replaceLineAfter(full(), header, "[\"@s/x.py\"]"), shape + ": item 0 is not an object");
    assertShapeError(
        replaceLineAfter(full(), header, "[{\"location\":\"@s/x.py\",\"headers\":{}}]"),
        shape + ": item 0 has no \"url\" string");
    assertShapeError(
        replaceLineAfter(full(), header, "[{\"location\":\"\",\"url\":\"u\",\"headers\":{}}]"),
        shape + ": item 0 has no \"location\" string");
    assertShapeError(
        replaceLineAfter(
            full(), header, "[{\"location\":\"@s/x.py\",\"url\":\"u\",\"headers\":{\"host\":1}}]"),
        shape + ": item 0's header values must be strings");
    assertShapeError(
        replaceLineAfter(
            full(), header, "[{\"location\":\"@s/x.py\",\"url\":\"u\",\"headers\":[]}]"),
        shape + ": item 0's \"headers\" is not an object");
    String truncated = "[{\"location\":\"@s/x.py\",\"url\":\"" + HELPER_URL + "\"";
    assertThatThrownBy(() -> read(replaceLineAfter(full(), header, truncated)))
        .hasMessageStartingWith(PREFIX + shape + ": it is not valid JSON (line ")
        .hasMessageEndingWith(ACCEPTED)
        .hasMessageNotContaining("SECRET");
    assertShapeError(
        full().replace("\nUDF_IMPORTS\n", "\n"),
        "the '/app/imports.json' heredoc at line "
            + lineOf(full(), header)
            + " is not closed by a line 'UDF_IMPORTS'");
  }

  @Test
  void theImportsBlockEndsWithTheDownloader() {
    String script = full();
    int start = script.indexOf("python - <<'PY'\n");
    int end = script.indexOf("\nPY\n") + "\nPY\n".length();
    String without = script.substring(0, start) + script.substring(end);
    assertShapeError(
        without,
        "expected the imports downloader (python - <<'PY') at line "
            + lineOf(without, "cat <<'UDF_CODE' > /app/udf.py")
            + ", found 'cat <<'UDF_CODE' > /app/udf.py'");
    assertShapeError(
        script.replace("\nPY\n", "\n"),
        "the imports downloader heredoc at line "
            + lineOf(script, "python - <<'PY'")
            + " is not closed by a line 'PY'");
  }

  @Test
  void badTypesAndHandlersAreWordedAsOnTheSpecPath() throws KilnException {
    assertThatThrownBy(() -> read(addOne().inputs("INTEGRAL").render()))
        .hasMessageStartingWith(PREFIX + "spec field 'input_types[1]': ")
        .hasMessageContaining("'INTEGRAL' is not a type name");
    assertSameAsSpec(
        QueryScripts.udf(ADD_ONE, "add_one").inputs("INTEGRAL").result("INT NULL"),
        "add_one",
        List.of("INTEGRAL"),
        "INT NULL",
        ADD_ONE,
        ErrorCode.INVALID_SPEC);
    assertSameAsSpec(
        QueryScripts.udf(ADD_ONE, "add_one").inputs("INT NULL").result("ARRAY(INT"),
        "add_one",
        List.of("INT NULL"),
        "ARRAY(INT",
        ADD_ONE,
        ErrorCode.INVALID_SPEC);
    assertSameAsSpec(
        QueryScripts.udf(ADD_ONE, "add-one").inputs("INT NULL").result("INT NULL"),
        "add-one",
        List.of("INT NULL"),
        "INT NULL",
        ADD_ONE,
        ErrorCode.INVALID_SPEC);
    assertSameAsSpec(
        QueryScripts.udf(ADD_ONE, "add_two").inputs("INT NULL").result("INT NULL"),
        "add_two",
        List.of("INT NULL"),
        "INT NULL",
        ADD_ONE,
        ErrorCode.HANDLER_NOT_DEFINED);
    assertSameAsSpec(
        QueryScripts.udf("", "add_one").inputs("INT NULL").result("INT NULL"),
        "add_one",
        List.of("INT NULL"),
        "INT NULL",
        "",
        ErrorCode.INVALID_SPEC);
  }

  private static void assertSameAsSpec(
      QueryScripts.Udf udf,
      String handler,
      List<String> inputs,
      String result,
      String code,
      ErrorCode expected) {
    ObjectNode json = new ObjectMapper().createObjectNode();
    json.put("handler", handler);
    inputs.forEach(json.putArray("input_types")::add);
    json.put("result_type", result);
    json.put("code", code);
    KilnException onSpec = null;
    try {
      UdfDefinition.fromSpec(json.toString(), List.of());
    } catch (KilnException e) {
      onSpec = e;
    }
    assertThat(onSpec).as("the spec path refuses it").isNotNull();
    assertThat(onSpec.code()).isEqualTo(expected);
    assertThat(onSpec.getMessage()).startsWith("invalid UDF spec: ");
    String wording = onSpec.getMessage().substring("invalid UDF spec: ".length());

    assertThatThrownBy(() -> read(udf.render()))
        .isInstanceOfSatisfying(KilnException.class, e -> assertThat(e.code()).isEqualTo(expected))
        .hasMessage(PREFIX + wording);
  }

  // --- a script in the shape Query's templates render (udf_cloud_script.sh.tpl and the imports
  // block beside it) for a small UDF, written out by hand; the bodies of the downloader and the
  // server stub, which Kiln skips, are abbreviated in our own words ---

  private static final String ANCHOR_CODE =
      """
      # /// script
      # dependencies = ["humanize==4.9.0"]
      # ///
      import humanize
      from helper import label

      def nice_size(n):
          return label(humanize.naturalsize(n))
      """;

  private static final StagedImport ANCHOR_IMPORT =
      new StagedImport(
          "@udf_stage/imports/helper.py",
          "https://s3.example.com/bucket/udf_stage/imports/helper.py"
              + "?X-Amz-Expires=259200&X-Amz-Signature=0f1e2d",
          Map.of("host", "s3.example.com"),
          "");

  private static final String RENDERED_BY_QUERY =
      """
      #!/usr/bin/env bash
      set -euo pipefail
      WORKDIR=/app
      mkdir -p "$WORKDIR"
      cd "$WORKDIR"

      python -m pip install --no-cache-dir humanize==4.9.0 pandas>=2
      mkdir -p /app/imports
      cat <<'UDF_IMPORTS' > /app/imports.json
      [{"location":"@udf_stage/imports/helper.py","url":"https://s3.example.com/bucket/udf_stage/imports/helper.py?X-Amz-Expires=259200&X-Amz-Signature=0f1e2d","headers":{"host":"s3.example.com"}}]
      UDF_IMPORTS
      python - <<'PY'
      # (Query's downloader: for each entry of /app/imports.json, a GET of its url with its
      # headers, saved to /app/imports/<last part of its location>; abbreviated here.)
      PY



      cat <<'UDF_CODE' > /app/udf.py
      # /// script
      # dependencies = ["humanize==4.9.0"]
      # ///
      import humanize
      from helper import label

      def nice_size(n):
          return label(humanize.naturalsize(n))

      UDF_CODE
      cat <<'UDF_SERVER_1' > /app/server.py
      # (Query's databend-udf server stub, abbreviated here: a status server on
      # RESOURCE_STATUS_ADDR, the imports on sys.path, a request counter, and the UDF served on
      # UDF_SERVER_ADDR. Kiln reads only the two lines below.)
      def _wrap_udf(func):
          return udf_decorator(name="nice_size", input_types=["BIGINT NULL"], result_type="VARCHAR NULL")(func)

      def main():
          func = getattr(udf, "nice_size")

      UDF_SERVER_1
      exec python /app/server.py
      """;
}
