package dev.kiln.definition;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;

class DatabendSqlTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  @Test
  void readsEveryPythonUdfAsQuerysSpecAndSkipsTheRest() throws Exception {
    String sql =
        """
        -- a comment; with a semicolon
        CREATE TABLE t (a INT);
        CREATE OR REPLACE FUNCTION add_one (INT) RETURNS INT LANGUAGE python
          HANDLER = 'add_one' AS $$
        def add_one(x):
            s = "a;b'c$d"  # ; ' $ inside the body
            return None if x is None else x + 1
        $$;
        /* block; comment */ SELECT 1;
        CREATE FUNCTION IF NOT EXISTS stats (ARRAY(INT), VARCHAR NOT NULL)
          RETURNS DOUBLE LANGUAGE PYTHON
          IMPORTS = ('@s/a.py', '@s/b.zip') PACKAGES = ('numpy', ' pandas>=2 ')
          HANDLER = 'stats' AS $$def stats(a, b):
            return 1.0
        $$
        """;
    DatabendSql.Script script = DatabendSql.read(sql);
    assertThat(script.otherStatements()).isEqualTo(2);
    assertThat(script.functions()).hasSize(2);

    DatabendSql.Function first = script.functions().get(0);
    assertThat(first.name()).isEqualTo("add_one");
    assertThat(first.line()).isEqualTo(3);
    JsonNode spec = JSON.readTree(first.spec());
    assertThat(spec.get("handler").asText()).isEqualTo("add_one");
    assertThat(spec.get("input_types").toString()).isEqualTo("[\"INT NULL\"]");
    assertThat(spec.get("result_type").asText()).isEqualTo("INT NULL");
    assertThat(spec.get("code").asText()).contains("s = \"a;b'c$d\"").startsWith("\ndef add_one");
    assertThat(UdfDefinition.fromSpec(first.spec(), java.util.List.of())).isNotNull();

    DatabendSql.Function second = script.functions().get(1);
    assertThat(second.name()).isEqualTo("stats");
    assertThat(second.line()).isEqualTo(10);
    assertThat(second.stagedImports()).isEqualTo(2);
    JsonNode s2 = JSON.readTree(second.spec());
    assertThat(s2.get("input_types").toString()).isEqualTo("[\"ARRAY(INT) NULL\",\"VARCHAR\"]");
    assertThat(s2.get("result_type").asText()).isEqualTo("DOUBLE NULL");
    assertThat(s2.get("packages").toString()).isEqualTo("[\"numpy\",\"pandas>=2\"]");
    assertThat(s2.get("imports")).isEmpty();
  }

  @Test
  void aFunctionWithoutHandlerOrCodeIsNamedWithItsLine() {
    String sql = "SELECT 1;\n\nCREATE FUNCTION f (INT) RETURNS INT LANGUAGE python AS $$x$$;\n";
    assertThatThrownBy(() -> DatabendSql.read(sql))
        .isInstanceOfSatisfying(
            DatabendSql.Malformed.class,
            e -> {
              assertThat(e.line()).isEqualTo(3);
              assertThat(e.getMessage()).contains("CREATE FUNCTION f").contains("HANDLER");
            });
    assertThatThrownBy(
            () -> DatabendSql.read("CREATE FUNCTION g () RETURNS INT LANGUAGE python AS $$ x"))
        .hasMessageContaining("not closed");
  }

  @Test
  void otherLanguagesAreSkipped() throws Exception {
    DatabendSql.Script s =
        DatabendSql.read(
            "CREATE FUNCTION j (INT) RETURNS INT LANGUAGE javascript HANDLER = 'j' AS $$x$$;");
    assertThat(s.functions()).isEmpty();
    assertThat(s.otherStatements()).isEqualTo(1);
  }
}
