package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static dev.kiln.worker.Vectors.values;
import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.DataType;
import dev.kiln.definition.QueryScripts;
import dev.kiln.worker.ArrowTypes;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.net.URI;
import java.nio.file.Path;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.Location;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.util.TransferPair;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Every Databend type through a real gVisor sandbox, NULLs included, with as few sandboxes as
 * possible: one UDF takes and returns a TUPLE holding a field of every type. The first call makes
 * Python build the values (Python → Arrow), the second sends them back in (Arrow → Python, where
 * the UDF checks their Python types) and must get them back unchanged. Plus code written for
 * databend-udf (Kiln's {@code databend_udf} module must be in the image).
 *
 * <p>Query's own Arrow shapes for arguments (Utf8View strings, Decimal64) are tested where the
 * conversion happens, in the worker (RunnerTypesIT, FlightEndpointIT); here the arguments are
 * Kiln's result shapes, which Query accepts just the same.
 */
class TypesEndToEndIT {
  static final String TENANT = "acme";

  static final String EVERY_TYPE =
      "TUPLE(b BOOLEAN NULL, i8 INT8 NULL, i16 INT16 NULL, i32 INT32 NULL, i64 INT64 NULL,"
          + " u8 UINT8 NULL, u16 UINT16 NULL, u32 UINT32 NULL, u64 UINT64 NULL, f32 FLOAT32 NULL,"
          + " f64 FLOAT64 NULL, d18 DECIMAL(15, 2) NULL, d38 DECIMAL(38, 10) NULL,"
          + " d76 DECIMAL(60, 5) NULL, dt DATE NULL, ts TIMESTAMP NULL, s STRING NULL,"
          + " bin BINARY NULL, v VARIANT NULL, arr ARRAY(INT32 NULL) NULL,"
          + " m MAP(STRING, INT64 NULL) NULL, t TUPLE(x INT32, y STRING) NULL,"
          + " vec VECTOR(3) NULL) NULL";

  /** Row n: 0 ordinary values, 1 every field NULL, 2 the whole tuple NULL, 3 edge values. */
  static final String CODE =
      """
      import datetime, decimal

      D = decimal.Decimal
      KINDS = (bool, int, int, int, int, int, int, int, int, float, float, D, D, D,
               datetime.date, datetime.datetime, str, bytes, (dict, list, str, int, bool),
               list, dict, tuple, list)

      def sample(n):
          if n == 0:
              return (True, -8, -16, -32, -64, 8, 16, 32, 64, 1.5, 2.25,
                      D('123.45'), D('-1234567890123456789012345678.0123456789'),
                      D('12345678901234567890123456789012345678901234567890.12345'),
                      datetime.date(2024, 2, 29), datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
                      'héllo ✓', b'\\x00\\xff', {'a': [1, 2.5, None], 'b': 'ü'},
                      [1, None, 3], {'k': 1, 'z': None}, (7, 'seven'), [0.5, -1.0, 2.0])
          if n == 1:
              return (None,) * len(KINDS)
          if n == 3:
              return (False, -128, -32768, -2**31, -2**63, 255, 65535, 2**32 - 1, 2**64 - 1,
                      -0.0, 1e308, D('-9999999999999.99'), D('0E-10'), D('-0.00001'),
                      datetime.date(1000, 1, 1), datetime.datetime(1969, 12, 31, 23, 59, 59, 999999),
                      '', b'', [], [], {}, (0, ''), [0.0, 0.0, 0.0])
          return None

      def rt(n, x):
          if x is None:
              return sample(n)
          for value, kind, name in zip(x, KINDS, 'b i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 d18 d38 d76 dt ts s bin v arr m t vec'.split()):
              if value is not None and not isinstance(value, kind):
                  raise TypeError('field %s arrived as %s %r' % (name, type(value).__name__, value))
          return x
      """;

  @TempDir static Path dataDir;
  static RunningKiln kiln;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void startKiln() throws Exception {
    kiln = RunningKiln.start(dataDir, config -> config.runnersPerSandbox(1));
  }

  @AfterAll
  static void stopKiln() throws Exception {
    if (kiln != null) {
      kiln.close();
    }
  }

  @Test
  void everyTypeRoundTripsThroughTheSandboxNullsIncluded() throws Exception {
    DatabendClient.Resource r =
        kiln.api().apply(TENANT, spec("rt", List.of("INT NULL", EVERY_TYPE), EVERY_TYPE, CODE));
    DataType type = DataType.parse(EVERY_TYPE);

    List<Object> built;
    List<Object> echoed;
    try (FieldVector rows = ints(List.of(0, 1, 2, 3));
        FieldVector noTuples =
            ArrowTypes.queryArgumentField("arg2", type).createVector(allocator)) {
      noTuples.allocateNew();
      noTuples.setValueCount(4); // every row NULL: Python builds the values
      try (FieldVector first = exchange(r, "rt", rows, noTuples)) {
        built = values(first);
        // Send Python's values back in; the UDF checks their Python types and returns them.
        try (FieldVector again = ints(List.of(0, 1, 2, 3));
            FieldVector second = exchange(r, "rt", again, first)) {
          echoed = values(second);
        }
      }
    }

    assertThat(built).hasSize(4);
    assertThat(built.get(0))
        .isEqualTo(
            List.of(
                true,
                -8L,
                -16L,
                -32L,
                -64L,
                8L,
                16L,
                32L,
                BigInteger.valueOf(64),
                1.5f,
                2.25,
                new BigDecimal("123.45"),
                new BigDecimal("-1234567890123456789012345678.0123456789"),
                new BigDecimal("12345678901234567890123456789012345678901234567890.12345"),
                LocalDate.of(2024, 2, 29),
                LocalDateTime.of(2024, 2, 29, 23, 59, 58, 123_456_000),
                "héllo ✓",
                List.of((byte) 0, (byte) -1),
                "{\"a\":[1,2.5,null],\"b\":\"ü\"}",
                Arrays.asList(1L, null, 3L),
                map("k", 1L, "z", null),
                List.of(7L, "seven"),
                List.of(0.5f, -1.0f, 2.0f)));
    assertThat(built.get(1)).isEqualTo(Arrays.asList(new Object[23]));
    assertThat(built.get(2)).isNull();
    assertThat(built.get(3))
        .isEqualTo(
            List.of(
                false,
                -128L,
                -32768L,
                (long) Integer.MIN_VALUE,
                Long.MIN_VALUE,
                255L,
                65535L,
                4294967295L,
                new BigInteger("18446744073709551615"),
                -0.0f,
                1e308,
                new BigDecimal("-9999999999999.99"),
                new BigDecimal("0E-10"),
                new BigDecimal("-0.00001"),
                LocalDate.of(1000, 1, 1),
                LocalDateTime.of(1969, 12, 31, 23, 59, 59, 999_999_000),
                "",
                List.of(),
                "[]",
                List.of(),
                map(),
                List.of(0L, ""),
                List.of(0f, 0f, 0f)));
    assertThat(echoed).isEqualTo(built);
  }

  @Test
  void theSameUdfThroughCreateWorkerIsTheSameResource() throws Exception {
    // Query's script carries the types as Python literals in its server stub and the code in a
    // heredoc: quotes, backslashes and non-ASCII must come through exactly, so that both front
    // doors give the same definition, the same key and the same sandbox.
    DatabendClient.Resource applied =
        kiln.api().apply(TENANT, spec("rt", List.of("INT NULL", EVERY_TYPE), EVERY_TYPE, CODE));
    String script =
        QueryScripts.udf(CODE, "rt").inputs("INT NULL", EVERY_TYPE).result(EVERY_TYPE).render();
    DatabendClient.Resource created =
        kiln.api().createWorker(TENANT, "rt", script, java.time.Duration.ofSeconds(5));
    assertThat(created.key()).isEqualTo(applied.key());
    try (FieldVector rows = ints(List.of(0));
        FieldVector none =
            ArrowTypes.queryArgumentField("arg2", DataType.parse(EVERY_TYPE))
                .createVector(allocator)) {
      none.allocateNew();
      none.setValueCount(1);
      try (FieldVector out = exchange(created, "rt", rows, none)) {
        assertThat(values(out).get(0)).asList().contains("héllo ✓", List.of(7L, "seven"));
      }
    }
  }

  @Test
  void codeWrittenForDatabendUdfRunsUnchanged() throws Exception {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["INT", "INT"], result_type="INT", skip_null=True, on_error="null")
        def safe_div(a, b):
            assert a is not None and b is not None
            return a // b
        """;
    DatabendClient.Resource r =
        kiln.api()
            .apply(TENANT, spec("safe_div", List.of("INT NULL", "INT NULL"), "INT NULL", code));

    List<List<Object>> out =
        KilnTestSupport.call(
            allocator,
            r,
            TENANT,
            "safe_div",
            List.of("INT NULL", "INT NULL"),
            "[[7,2],[null,1],[1,0],[9,null],[-9,2]]");

    assertThat(out).containsExactly(row(3), row(null), row(null), row(null), row(-5));
  }

  @Test
  void aDecoratorThatDisagreesWithTheSignatureFailsToLoad() {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["VARCHAR"], result_type="INT")
        def wrong(x):
            return 1
        """;
    // Reported by ApplyUdfResource when the sandbox is up within its wait, else by the call.
    Throwable error;
    try {
      DatabendClient.Resource r =
          kiln.api().apply(TENANT, spec("wrong", List.of("INT NULL"), "INT NULL", code));
      error =
          org.assertj.core.api.Assertions.catchThrowable(
              () ->
                  KilnTestSupport.call(
                      allocator, r, TENANT, "wrong", List.of("INT NULL"), "[[1]]"));
    } catch (RuntimeException e) {
      error = e;
    }
    assertThat(error)
        .hasMessageContaining("the @udf decorator of wrong declares input_types=[VARCHAR]");
  }

  // ---------------------------------------------------------------- helpers

  private static List<Object> row(Object value) {
    return Arrays.asList(value);
  }

  private static Map<Object, Object> map(Object... kv) {
    Map<Object, Object> m = new LinkedHashMap<>();
    for (int i = 0; i < kv.length; i += 2) {
      m.put(kv[i], kv[i + 1]);
    }
    return m;
  }

  private FieldVector ints(List<Integer> values) {
    IntVector v = new IntVector("arg1", allocator);
    v.allocateNew(values.size());
    for (int i = 0; i < values.size(); i++) {
      v.set(i, values.get(i));
    }
    v.setValueCount(values.size());
    return v;
  }

  /**
   * One DoExchange as Databend makes it, sending {@code args} (their buffers move into the call);
   * returns the result column, owned by the caller.
   */
  private FieldVector exchange(DatabendClient.Resource r, String handler, FieldVector... args)
      throws Exception {
    URI uri = URI.create(r.endpoint());
    int rows = args[0].getValueCount();
    List<FieldVector> columns = new ArrayList<>();
    for (FieldVector arg : args) {
      // The batch takes the arguments' buffers; the caller's vectors are left empty.
      TransferPair move = arg.getTransferPair(allocator);
      move.transfer();
      columns.add((FieldVector) move.getTo());
    }
    try (FlightClient client =
            FlightClient.builder(allocator, Location.forGrpcInsecure(uri.getHost(), uri.getPort()))
                .build();
        VectorSchemaRoot batch = new VectorSchemaRoot(columns);
        FlightClient.ExchangeReaderWriter x =
            client.doExchange(
                FlightDescriptor.path(handler),
                KilnTestSupport.databendHeaders(r, TENANT, handler, "types-it"),
                CallOptions.timeout(120, TimeUnit.SECONDS))) {
      batch.setRowCount(rows);
      x.getWriter().start(batch);
      x.getWriter().putNext();
      x.getWriter().completed();
      if (!x.getReader().next()) {
        throw new AssertionError("no result batch");
      }
      FieldVector result = x.getReader().getRoot().getVector(0);
      FieldVector owned = (FieldVector) result.getTransferPair(allocator).getTo();
      result.makeTransferPair(owned).transfer();
      while (x.getReader().next()) {
        // drain
      }
      return owned;
    } catch (FlightRuntimeException e) {
      throw e;
    }
  }
}
