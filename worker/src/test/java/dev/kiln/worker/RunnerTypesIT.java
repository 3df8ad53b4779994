package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import dev.kiln.definition.RuntimeSpec;
import java.math.BigDecimal;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every Databend type through real Python runners on the host, in the Arrow shapes Databend Query
 * sends (Utf8View strings, LargeList items named {@code _array}, MAP entries {@code 1}/{@code 2},
 * Decimal128/256, µs timestamps, VARIANT as JSON text): values and NULLs in, Python values, results
 * out. The same files run in gVisor in the control plane's TypesEndToEndIT.
 */
class RunnerTypesIT {

  static final String IDENTITY = "def ident(x):\n    return x\n";

  @RegisterExtension final HostRunnerPools pools = new HostRunnerPools();

  private RunnerPool start(RuntimeSpec spec, int runners) throws Exception {
    return pools.start(
        spec, new RunnerPool.Options(runners, Duration.ofSeconds(30), Duration.ofSeconds(60), 50));
  }

  /** Calls with one column per (field, values); returns the result values. */
  private List<Object> call(RunnerPool pool, List<Field> fields, List<?>... columns)
      throws Exception {
    List<FieldVector> inputs = new ArrayList<>();
    try {
      for (int i = 0; i < columns.length; i++) {
        inputs.add(Vectors.of(pools.allocator(), fields.get(i), columns[i]));
      }
      int rows = columns.length == 0 ? 0 : columns[0].size();
      try (FieldVector out = pool.call(inputs, rows, pools.allocator())) {
        assertThat(out.getValueCount()).isEqualTo(rows);
        return Vectors.values(out);
      }
    } finally {
      inputs.forEach(FieldVector::close);
    }
  }

  static Field query(String type) {
    try {
      return ArrowTypes.queryArgumentField("arg1", Udfs.type(type));
    } catch (KilnException e) {
      throw new IllegalArgumentException(e);
    }
  }

  static Field leaf(ArrowType type) {
    return new Field("arg1", FieldType.nullable(type), null);
  }

  static Map<Object, Object> map(Object... kv) {
    Map<Object, Object> m = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      m.put(kv[i], kv[i + 1]);
    }
    return m;
  }

  static Stream<Arguments> types() {
    LocalDateTime t1 = LocalDateTime.of(2024, 2, 29, 23, 59, 58, 123_456_000);
    LocalDateTime t2 = LocalDateTime.of(1969, 12, 31, 23, 59, 59, 999_999_000);
    LocalDateTime t3 = LocalDateTime.of(1000, 1, 1, 0, 0);
    return Stream.of(
        Arguments.of(
            "DATE NULL",
            query("DATE NULL"),
            Arrays.asList(
                LocalDate.of(2024, 2, 29),
                null,
                LocalDate.of(1000, 1, 1),
                LocalDate.of(9999, 12, 31),
                LocalDate.of(1969, 12, 31))),
        Arguments.of("TIMESTAMP NULL", query("TIMESTAMP NULL"), Arrays.asList(t1, null, t2, t3)),
        Arguments.of(
            "TIMESTAMP NULL",
            leaf(new ArrowType.Timestamp(TimeUnit.MILLISECOND, "UTC")),
            Arrays.asList(LocalDateTime.of(2024, 1, 2, 3, 4, 5, 6_000_000), null)),
        Arguments.of(
            "TIMESTAMP NULL",
            leaf(new ArrowType.Timestamp(TimeUnit.NANOSECOND, null)),
            Arrays.asList(t1, t2, null)),
        Arguments.of(
            "DECIMAL(15, 2) NULL",
            query("DECIMAL(15, 2) NULL"),
            Arrays.asList(
                new BigDecimal("1.50"),
                new BigDecimal("-0.01"),
                null,
                new BigDecimal("9999999999999.99"),
                new BigDecimal("0.00"))),
        Arguments.of(
            "DECIMAL(38, 10) NULL",
            query("DECIMAL(38, 10) NULL"),
            Arrays.asList(
                new BigDecimal("1234567890123456789012345678.0123456789"),
                new BigDecimal("-9999999999999999999999999999.9999999999"),
                null)),
        Arguments.of(
            "DECIMAL(60, 5) NULL",
            query("DECIMAL(60, 5) NULL"),
            Arrays.asList(
                new BigDecimal("-1234567890123456789012345678901234567890123456789012.34567"),
                null,
                new BigDecimal("0.00001"))),
        Arguments.of(
            "VARIANT NULL",
            query("VARIANT NULL"),
            Arrays.asList(
                "{\"a\":[1,2.5,null],\"b\":\"ü\",\"c\":{\"d\":true}}",
                "[]",
                "\"text\"",
                "-123",
                null,
                "false")),
        Arguments.of(
            "ARRAY(INT32) NULL",
            query("ARRAY(INT32) NULL"),
            Arrays.asList(List.of(1L, 2L, 3L), List.of(), null, List.of(-1L))),
        Arguments.of(
            "ARRAY(STRING NULL) NULL",
            query("ARRAY(STRING NULL) NULL"),
            Arrays.asList(
                Arrays.asList("a", null, "a string longer than twelve bytes", "ü"),
                null,
                List.of())),
        Arguments.of(
            "ARRAY(ARRAY(INT64 NULL)) NULL",
            query("ARRAY(ARRAY(INT64 NULL)) NULL"),
            Arrays.asList(
                List.of(Arrays.asList(1L, null), List.of()),
                List.of(),
                null,
                List.of(List.of(7L)))),
        Arguments.of(
            "ARRAY(INT32) NULL as a 32-bit List",
            new Field(
                "arg1",
                FieldType.nullable(ArrowType.List.INSTANCE),
                List.of(
                    new Field("item", FieldType.notNullable(new ArrowType.Int(32, true)), null))),
            Arrays.asList(List.of(5L, 6L), null, List.of())),
        Arguments.of(
            "MAP(STRING, INT32 NULL) NULL",
            query("MAP(STRING, INT32 NULL) NULL"),
            Arrays.asList(map("a", 1L, "b", null), map(), null, map("long key over twelve", -5L))),
        Arguments.of(
            "TUPLE(1 INT32 NULL, 2 STRING NULL) NULL",
            query("TUPLE(1 INT32 NULL, 2 STRING NULL) NULL"),
            Arrays.asList(List.of(1L, "x"), Arrays.asList(null, null), null)),
        Arguments.of(
            "TUPLE(a DATE NULL, b ARRAY(DECIMAL(10, 2)) NULL, c MAP(INT64, TUPLE(x BOOLEAN NULL) NULL)"
                + " NULL) NULL",
            query(
                "TUPLE(a DATE NULL, b ARRAY(DECIMAL(10, 2)) NULL, c MAP(INT64, TUPLE(x BOOLEAN"
                    + " NULL) NULL) NULL) NULL"),
            Arrays.asList(
                List.of(
                    LocalDate.of(2020, 1, 1),
                    List.of(new BigDecimal("1.25"), new BigDecimal("-3.00")),
                    map(1L, List.of(true), 2L, Arrays.asList((Object) null), 3L, null)),
                Arrays.asList(null, null, null),
                null)),
        Arguments.of(
            "VECTOR(3) NULL",
            query("VECTOR(3) NULL"),
            Arrays.asList(List.of(1.5f, -2f, 0f), null, List.of(0f, 0f, 3.25f))),
        Arguments.of(
            "BINARY NOT NULL",
            query("BINARY NOT NULL"),
            Arrays.asList(Vectors.boxed(new byte[] {0, (byte) 255}), List.of())));
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("types")
  void valuesAndNullsRoundTrip(String type, Field field, List<Object> values) throws Exception {
    String declared = type.endsWith(" as a 32-bit List") ? "ARRAY(INT32) NULL" : type;
    RunnerPool pool = start(Udfs.spec("ident", List.of(declared), declared, IDENTITY), 1);

    assertThat(call(pool, List.of(field), values)).isEqualTo(values);
  }

  @Test
  void argumentsArriveAsTheirPythonValues() throws Exception {
    String code =
        """
        def show(d, t, m, v, a, mp, tp, vec):
            def name(x):
                return type(x).__name__ + ':' + repr(x)
            return ' | '.join(name(x) for x in (d, t, m, v, a, mp, tp, vec))
        """;
    List<String> types =
        List.of(
            "DATE",
            "TIMESTAMP",
            "DECIMAL(10, 3)",
            "VARIANT",
            "ARRAY(INT32 NULL)",
            "MAP(STRING, INT64)",
            "TUPLE(1 INT32, 2 STRING)",
            "VECTOR(2)");
    RunnerPool pool = start(Udfs.spec("show", types, "VARCHAR", code), 1);
    List<Field> fields = new ArrayList<>();
    for (String t : types) {
      fields.add(query(t + " NULL"));
    }

    List<Object> out =
        call(
            pool,
            fields,
            List.of(LocalDate.of(2024, 5, 6)),
            List.of(LocalDateTime.of(2024, 5, 6, 7, 8, 9, 10_000)),
            List.of(new BigDecimal("-1.250")),
            List.of("{\"k\":[1,null]}"),
            List.of(Arrays.asList(1L, null)),
            List.of(map("a", 1L)),
            List.of(List.of(7L, "s")),
            List.of(List.of(0.5f, 1f)));

    assertThat(out)
        .containsExactly(
            "date:datetime.date(2024, 5, 6) | datetime:datetime.datetime(2024, 5, 6, 7, 8, 9, 10)"
                + " | Decimal:Decimal('-1.250') | dict:{'k': [1, None]} | list:[1, None]"
                + " | dict:{'a': 1} | tuple:(7, 's') | list:[0.5, 1.0]");
  }

  @Test
  void resultsConvertFromTheUsualPythonValues() throws Exception {
    String code =
        """
        import datetime, decimal
        def conv(i):
            east = datetime.timezone(datetime.timedelta(hours=2))
            return [
                (decimal.Decimal('1.235'), datetime.datetime(2024, 1, 1, 2, 0, tzinfo=east), None,
                 (1, 2), {'a': None}),
                (3, datetime.date(2024, 1, 2), {'x': [1, 'y']}, range(2), {}),
                (2.5, datetime.datetime(1960, 6, 1, 0, 0, 0, 1), 'str', [], {'b': 2}),
            ][i]
        """;
    String result =
        "TUPLE(d DECIMAL(10, 2), t TIMESTAMP, v VARIANT NOT NULL, a ARRAY(INT32), m MAP(STRING,"
            + " INT64 NULL)) NULL";
    RunnerPool pool = start(Udfs.spec("conv", List.of("INT"), result, code), 1);

    List<Object> out = call(pool, List.of(query("INT NULL")), List.of(0L, 1L, 2L));

    assertThat(out)
        .containsExactly(
            List.of(
                new BigDecimal("1.24"),
                LocalDateTime.of(2024, 1, 1, 0, 0),
                "null",
                List.of(1L, 2L),
                map("a", null)),
            List.of(
                new BigDecimal("3.00"),
                LocalDateTime.of(2024, 1, 2, 0, 0),
                "{\"x\":[1,\"y\"]}",
                List.of(0L, 1L),
                map()),
            List.of(
                new BigDecimal("2.50"),
                LocalDateTime.of(1960, 6, 1, 0, 0, 0, 1000),
                "\"str\"",
                List.of(),
                map("b", 2L)));
  }

  @Test
  void badNestedResultsNameRowPathAndType() throws Exception {
    RunnerPool arrays =
        start(
            Udfs.spec(
                "f",
                List.of("INT"),
                "ARRAY(INT32) NULL",
                "def f(i):\n    return [[1], [2, 'x']][i]\n"),
            1);
    assertThatThrownBy(() -> call(arrays, List.of(query("INT NULL")), List.of(0L, 1L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_RAISED))
        .hasMessageContaining("the function returned [2, 'x'] for row 1")
        .hasMessageContaining("ARRAY(INT32 NOT NULL) NULL: the value at [1] is str 'x'")
        .hasMessageContaining("(expected int)");

    RunnerPool tuples =
        start(
            Udfs.spec(
                "g",
                List.of("INT"),
                "TUPLE(a INT32, b STRING) NULL",
                "def g(i):\n    return (1,)\n"),
            1);
    assertThatThrownBy(() -> call(tuples, List.of(query("INT NULL")), List.of(0L)))
        .hasMessageContaining("it has 1 fields, the TUPLE has 2");

    RunnerPool decimals =
        start(Udfs.spec("h", List.of("INT"), "DECIMAL(4, 2)", "def h(i):\n    return 100\n"), 1);
    assertThatThrownBy(() -> call(decimals, List.of(query("INT NULL")), List.of(0L)))
        .hasMessageContaining("returned int 100 for row 0")
        .hasMessageContaining("it does not fit 4 digits");

    RunnerPool json =
        start(
            Udfs.spec(
                "j", List.of("INT"), "VARIANT", "def j(i):\n    return {'n': float('nan')}\n"),
            1);
    assertThatThrownBy(() -> call(json, List.of(query("INT NULL")), List.of(0L)))
        .hasMessageContaining("it cannot be written as JSON");

    RunnerPool vectors =
        start(Udfs.spec("k", List.of("INT"), "VECTOR(2)", "def k(i):\n    return [1.0]\n"), 1);
    assertThatThrownBy(() -> call(vectors, List.of(query("INT NULL")), List.of(0L)))
        .hasMessageContaining("it has 1 values, the VECTOR has 2");
  }

  @Test
  void nestedBatchesSplitAcrossRunnersJoinInOrder(@TempDir Path meet) throws Exception {
    // Each runner, on its first row, waits (bounded) until the other runner has a row too, so
    // the test does not depend on which runner thread wakes first: if the pool sliced the batch,
    // the second slice must go to the idle runner while the first one waits.
    String code =
        """
        import os, time
        MEET = %s
        met = False
        def f(x):
            global met
            if not met:
                open(os.path.join(MEET, str(os.getpid())), 'w').close()
                deadline = time.time() + 10
                while len(os.listdir(MEET)) < 2 and time.time() < deadline:
                    time.sleep(0.005)
                met = True
            return None if x is None else (os.getpid(), [str(x)] * (x %% 3), {'k': x} if x %% 5 else None)
        """
            .formatted("'" + meet + "'");
    String result = "TUPLE(pid INT64, s ARRAY(STRING), m MAP(STRING, INT64) NULL) NULL";
    RunnerPool pool = start(Udfs.spec("f", List.of("BIGINT"), result, code), 2);
    int rows = 3 * RunnerSlots.MIN_SLICE_ROWS;
    List<Object> in = new ArrayList<>();
    for (int i = 0; i < rows; i++) {
      in.add(i % 7 == 0 ? null : (long) i);
    }

    List<Object> out = call(pool, List.of(query("BIGINT NULL")), in);

    List<Object> pids = new ArrayList<>();
    for (int i = 0; i < rows; i++) {
      if (in.get(i) == null) {
        assertThat(out.get(i)).isNull();
        continue;
      }
      List<?> row = (List<?>) out.get(i);
      pids.add(row.get(0));
      assertThat(row.get(1)).isEqualTo(java.util.Collections.nCopies(i % 3, Integer.toString(i)));
      assertThat(row.get(2)).isEqualTo(i % 5 == 0 ? null : map("k", (long) i));
    }
    assertThat(pids.stream().distinct().count()).as("both runners computed a slice").isEqualTo(2);
    assertThat(pids.get(0)).isNotEqualTo(pids.get(pids.size() - 1));
  }

  @Test
  void typesOfArgumentsAreCheckedRecursively() throws Exception {
    RunnerPool pool =
        start(Udfs.spec("ident", List.of("ARRAY(INT64)"), "ARRAY(INT64)", IDENTITY), 1);
    assertThatThrownBy(
            () -> call(pool, List.of(query("ARRAY(STRING) NULL")), List.of(List.of("x"))))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.ARGUMENTS_MISMATCH))
        .hasMessageContaining("argument arg1 is declared ARRAY(INT64 NOT NULL) NULL")
        .hasMessageContaining("arrived as Arrow LargeList<Utf8View>");
  }

  @Test
  void everyTypeIsSupported() throws Exception {
    for (String t :
        List.of(
            "DATE",
            "TIMESTAMP",
            "DECIMAL(76, 10)",
            "VARIANT",
            "ARRAY(MAP(STRING, VECTOR(4)))",
            "TUPLE(a BINARY, b TUPLE(c BOOLEAN))")) {
      DataType type = Udfs.type(t);
      RunnerPool.requireSupported(type);
      assertThat(ArrowTypes.field("x", type).getType()).isEqualTo(ArrowTypes.arrowType(type));
    }
  }
}
