package dev.kiln.definition;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.KilnException;
import java.util.List;
import org.junit.jupiter.api.Test;

class SpecParserTest {
  static final String SPEC =
      "{\"version\":1,\"kind\":\"udf\",\"language\":\"python\",\"handler\":\"add_one\","
          + "\"input_types\":[\"INT NULL\"],\"result_type\":\"INT NULL\","
          + "\"imports\":[\"@s/imports/helper.py\"],\"packages\":[\"numpy\"],"
          + "\"runtime_version\":\"3.12.2\",\"code\":\"def add_one(x):\\n    return x + 1\\n\"}";

  @Test
  void parsesEveryKey() throws KilnException {
    RuntimeSpec spec = RuntimeSpec.parse(SPEC);
    assertThat(spec.handler()).isEqualTo("add_one");
    assertThat(spec.inputTypes()).extracting(DataType::toString).containsExactly("INT32 NULL");
    assertThat(spec.resultType().nullable()).isTrue();
    assertThat(spec.imports()).containsExactly("@s/imports/helper.py");
    assertThat(spec.packages()).containsExactly("numpy");
    assertThat(spec.runtimeVersion()).isEqualTo("3.12.2");
    assertThat(spec.code()).startsWith("def add_one");
  }

  @Test
  void canonicalFormIgnoresKeyOrderWhitespaceAndTypeAliases() throws KilnException {
    String reordered =
        "{ \"code\": \"def add_one(x):\\n    return x + 1\\n\", \"result_type\": \"INT32 NULL\",\n"
            + "  \"handler\": \"add_one\", \"input_types\": [\"int\"], \"kind\": \"udf\",\n"
            + "  \"packages\": [\"numpy\"], \"imports\": [\"@s/imports/helper.py\"],\n"
            + "  \"language\": \"python\", \"version\": 1, \"runtime_version\": \"3.12.2\" }";
    assertThat(RuntimeSpec.parse(reordered).canonicalJson())
        .isEqualTo(RuntimeSpec.parse(SPEC).canonicalJson());
  }

  @Test
  void defaultsOptionalKeys() throws KilnException {
    RuntimeSpec spec =
        RuntimeSpec.parse(
            "{\"handler\":\"f\",\"input_types\":[],\"result_type\":\"INT\",\"code\":\"def f(): return 1\"}");
    assertThat(spec.runtimeVersion()).isEqualTo("3.12.2");
    assertThat(spec.imports()).isEmpty();
    assertThat(spec.packages()).isEmpty();
    assertThat(spec.version()).isEqualTo(1);
  }

  @Test
  void errorsNameTheFieldAndWhatIsAllowed() {
    assertThatThrownBy(() -> RuntimeSpec.parse("{not json")).hasMessageContaining("not valid JSON");
    assertThatThrownBy(() -> RuntimeSpec.parse("[1]"))
        .hasMessageContaining("must be a JSON object");
    assertThatThrownBy(() -> RuntimeSpec.parse(SPEC.replace("\"INT NULL\"]", "\"INTEGRAL\"]")))
        .hasMessageContaining("input_types[0]")
        .hasMessageContaining("'INTEGRAL' is not a type name");
    assertThatThrownBy(() -> RuntimeSpec.parse(SPEC.replace("\"result_type\":\"INT NULL\",", "")))
        .hasMessageContaining("'result_type': is missing");
    assertThatThrownBy(() -> RuntimeSpec.parse(SPEC.replace("\"python\"", "\"javascript\"")))
        .hasMessageContaining("language 'javascript' is not supported");
    assertThatThrownBy(() -> RuntimeSpec.parse(SPEC.replace("\"add_one\",", "\"add-one\",")))
        .hasMessageContaining("handler")
        .hasMessageContaining("not a Python identifier");
    assertThatThrownBy(() -> RuntimeSpec.parse(SPEC.replace("\"3.12.2\"", "\"twelve\"")))
        .hasMessageContaining("runtime_version");
    assertThatThrownBy(() -> RuntimeSpec.parse(SPEC.replace("[\"numpy\"]", "[1]")))
        .hasMessageContaining("packages[0]")
        .hasMessageContaining("must be a string");
  }

  @Test
  void contentKeyDependsOnTagNotUrlAndOnBaseAndRunner() throws KilnException {
    RuntimeSpec spec = RuntimeSpec.parse(SPEC);
    List<ImportRef> imports = List.of(new ImportRef("@s/imports/helper.py", "etag-1"));
    ContentKey a = ContentKeys.compute(spec, imports, "sha256:base", "r1", "");
    assertThat(ContentKeys.compute(spec, imports, "sha256:base", "r1", "")).isEqualTo(a);
    assertThat(
            ContentKeys.compute(
                spec,
                List.of(new ImportRef("@s/imports/helper.py", "etag-2")),
                "sha256:base",
                "r1",
                ""))
        .isNotEqualTo(a);
    assertThat(ContentKeys.compute(spec, imports, "sha256:other", "r1", "")).isNotEqualTo(a);
    assertThat(ContentKeys.compute(spec, imports, "sha256:base", "r2", "")).isNotEqualTo(a);
    assertThat(ContentKeys.compute(spec, imports, "sha256:base", "r1", "numpy==2")).isNotEqualTo(a);
  }
}
