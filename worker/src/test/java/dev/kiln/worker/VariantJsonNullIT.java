package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.base.KilnException;
import dev.kiln.definition.RuntimeSpec;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.Field;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;

/**
 * A VARIANT holding JSON null is a value, not SQL NULL, as Databend Query treats it: Query sends
 * SQL NULL as a cleared validity bit and JSON null as the text {@code null}, and parses the text
 * {@code null} in a result back as JSON null. Through real Python runners, at the top of a VARIANT
 * and with VARIANT inside ARRAY, MAP and TUPLE; {@code databend_udf.JSON_NULL} in Python.
 */
class VariantJsonNullIT {

  static final String IDENTITY = "def ident(x):\n    return x\n";

  @RegisterExtension final HostRunnerPools runners = new HostRunnerPools();

  private RunnerPool start(RuntimeSpec spec) throws Exception {
    return runners.start(spec);
  }

  /** Calls with one column of the type Query sends for typeText; returns the result values. */
  private List<Object> call(RunnerPool pool, String typeText, List<?> values) throws Exception {
    try (FieldVector in = Vectors.of(runners.allocator(), query(typeText), values);
        FieldVector out = pool.call(List.of(in), values.size(), runners.allocator())) {
      assertThat(out.getValueCount()).isEqualTo(values.size());
      return Vectors.values(out);
    }
  }

  private static Field query(String type) {
    try {
      return ArrowTypes.queryArgumentField("arg1", Udfs.type(type));
    } catch (KilnException e) {
      throw new IllegalArgumentException(e);
    }
  }

  private static Map<Object, Object> map(Object... kv) {
    Map<Object, Object> m = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      m.put(kv[i], kv[i + 1]);
    }
    return m;
  }

  @Test
  void identityKeepsJsonNullApartFromSqlNull() throws Exception {
    RunnerPool pool = start(Udfs.spec("ident", List.of("VARIANT"), "VARIANT", IDENTITY));
    List<Object> values = Arrays.asList(null, "null", "[null,1]", "{\"a\":null}", "0", "null");

    assertThat(call(pool, "VARIANT NULL", values)).isEqualTo(values);
  }

  @Test
  void identityKeepsJsonNullInsideArrayMapAndTuple() throws Exception {
    String array = "ARRAY(VARIANT NULL) NULL";
    RunnerPool arrays = start(Udfs.spec("ident", List.of(array), array, IDENTITY));
    List<Object> lists =
        Arrays.asList(Arrays.asList("null", null, "[null]"), null, List.of(), List.of("null"));
    assertThat(call(arrays, array, lists)).isEqualTo(lists);

    String mapType = "MAP(STRING, VARIANT NULL) NULL";
    RunnerPool maps = start(Udfs.spec("ident", List.of(mapType), mapType, IDENTITY));
    List<Object> dicts = Arrays.asList(map("j", "null", "s", null, "o", "{\"a\":null}"), null);
    assertThat(call(maps, mapType, dicts)).isEqualTo(dicts);

    String tuple = "TUPLE(1 VARIANT NULL, 2 VARIANT NULL) NULL";
    RunnerPool tuples = start(Udfs.spec("ident", List.of(tuple), tuple, IDENTITY));
    List<Object> rows =
        Arrays.asList(Arrays.asList("null", null), Arrays.asList(null, "null"), null);
    assertThat(call(tuples, tuple, rows)).isEqualTo(rows);
  }

  @Test
  void pythonSeesJsonNullAsTheSentinelAndSqlNullAsNone() throws Exception {
    String code =
        """
        from databend_udf import JSON_NULL
        def show(v):
            return '%r %s' % (v, v is JSON_NULL)
        """;
    RunnerPool pool = start(Udfs.spec("show", List.of("VARIANT"), "VARCHAR", code));

    assertThat(call(pool, "VARIANT NULL", Arrays.asList(null, "null", "[null,1]", "{\"a\":null}")))
        .containsExactly("None False", "JSON_NULL True", "[None, 1] False", "{'a': None} False");

    RunnerPool items =
        start(
            Udfs.spec(
                "show",
                List.of("ARRAY(VARIANT NULL)"),
                "VARCHAR",
                code.replace("(v, v is JSON_NULL)", "(v, [x is JSON_NULL for x in v])")));
    assertThat(call(items, "ARRAY(VARIANT NULL) NULL", List.of(Arrays.asList("null", null, "1"))))
        .containsExactly("[JSON_NULL, None, 1] [True, False, False]");
  }

  @Test
  void returningTheSentinelGivesJsonNullAndNoneGivesSqlNull() throws Exception {
    String code =
        """
        from databend_udf import JSON_NULL
        def f(i):
            return [None, JSON_NULL, [JSON_NULL, None, 1], {'a': JSON_NULL, 'b': None}][i]
        """;
    RunnerPool pool = start(Udfs.spec("f", List.of("INT"), "VARIANT", code));
    assertThat(call(pool, "INT NULL", List.of(0L, 1L, 2L, 3L)))
        .containsExactly(null, "null", "[null,null,1]", "{\"a\":null,\"b\":null}");

    String items =
        """
        from databend_udf import JSON_NULL
        def f(i):
            return [JSON_NULL, None, [JSON_NULL]] if i else None
        """;
    RunnerPool arrays = start(Udfs.spec("f", List.of("INT"), "ARRAY(VARIANT NULL) NULL", items));
    assertThat(call(arrays, "INT NULL", List.of(1L, 0L)))
        .containsExactly(Arrays.asList("null", null, "[null]"), null);
  }

  @Test
  void skipNullSkipsSqlNullButCallsTheFunctionWithJsonNull() throws Exception {
    String code =
        """
        from databend_udf import udf, JSON_NULL
        @udf(input_types=["VARIANT"], result_type="VARCHAR", skip_null=True)
        def kind(v):
            return 'json null' if v is JSON_NULL else type(v).__name__
        """;
    RunnerPool pool = start(Udfs.spec("kind", List.of("VARIANT"), "VARCHAR", code));

    assertThat(call(pool, "VARIANT NULL", Arrays.asList("null", null, "{}")))
        .containsExactly("json null", null, "dict");
  }
}
