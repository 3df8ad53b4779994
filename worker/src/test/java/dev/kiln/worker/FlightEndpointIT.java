package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.RuntimeSpec;
import dev.kiln.definition.Tenant;
import io.grpc.Status;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStatusCode;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/** FlightEndpoint with a real Flight client, over real runner processes. */
class FlightEndpointIT {

  static final String TENANT = "tenant-a";
  static final ArrowType INT64 = new ArrowType.Int(64, true);

  @TempDir Path dir;
  private final MapDirectory directory = new MapDirectory();
  private final SimpleMeterRegistry meters = new SimpleMeterRegistry();
  private final List<RunnerPool> pools = new ArrayList<>();
  private final AtomicInteger udfs = new AtomicInteger();
  private Tokens tokens;
  private FlightEndpoint endpoint;
  private BufferAllocator allocator;
  private FlightTestClient client;

  @BeforeEach
  void setUp() throws Exception {
    tokens = new Tokens(new byte[32]);
    endpoint = startEndpoint(Duration.ofSeconds(30));
    allocator = new RootAllocator();
    client = new FlightTestClient(allocator, endpoint.port());
  }

  private FlightEndpoint startEndpoint(Duration readyWait) throws Exception {
    return FlightEndpoint.start(
        new FlightEndpoint.Config("127.0.0.1", 0, readyWait), tokens, directory, meters);
  }

  @AfterEach
  void tearDown() throws Exception {
    client.close();
    pools.forEach(RunnerPool::close);
    endpoint.close(); // fails on leaked server buffers
    allocator.close(); // fails on leaked client buffers
  }

  /** A UDF registered under a fresh key; its handle is not ready yet. */
  private record Udf(ContentKey key, RuntimeSpec spec, MapDirectory.Handle handle) {}

  private Udf register(RuntimeSpec spec) throws Exception {
    ContentKey key =
        ContentKey.ofBytes(
            MessageDigest.getInstance("SHA-256")
                .digest(("udf-" + udfs.incrementAndGet()).getBytes(StandardCharsets.UTF_8)));
    MapDirectory.Handle handle = new MapDirectory.Handle(UdfSignature.of(spec));
    directory.put(TENANT, key, handle);
    return new Udf(key, spec, handle);
  }

  private RunnerPool startPool(Udf udf, RunnerPool.Options options) throws Exception {
    HostRunnerLauncher launcher =
        new HostRunnerLauncher(dir.resolve(udf.key().shortForm()), udf.spec());
    RunnerPool pool = RunnerPool.start(UdfSignature.of(udf.spec()), launcher, options);
    pools.add(pool);
    return pool;
  }

  /** Registers and starts a UDF, ready for calls. */
  private Udf ready(RuntimeSpec spec) throws Exception {
    return ready(spec, RunnerPool.Options.defaults());
  }

  private Udf ready(RuntimeSpec spec, RunnerPool.Options options) throws Exception {
    Udf udf = register(spec);
    udf.handle().ready.complete(startPool(udf, options));
    return udf;
  }

  private Map<String, String> headers(Udf udf) {
    Map<String, String> h = new HashMap<>();
    h.put(Tokens.HEADER, tokens.issue(new Tenant(TENANT), udf.key()));
    h.put("x-databend-tenant", TENANT);
    h.put("x-databend-function", "f");
    h.put("x-databend-query-id", "q1");
    return h;
  }

  private static Schema schema(ArrowType... types) {
    List<Field> fields = new ArrayList<>();
    for (int i = 0; i < types.length; i++) {
      fields.add(new Field("arg" + (i + 1), FieldType.nullable(types[i]), null));
    }
    return new Schema(fields);
  }

  private static List<List<List<?>>> oneBatch(List<?>... columns) {
    return List.of(List.of(columns));
  }

  // ---------------------------------------------------------------- data

  @ParameterizedTest(name = "{0} from Arrow {1}")
  @MethodSource("dev.kiln.worker.RunnerPoolIT#types")
  void valuesAndNullsRoundTrip(String type, ArrowType arrow, List<Object> values) throws Exception {
    Udf udf = ready(Udfs.spec("ident", List.of(type), type, RunnerPoolIT.IDENTITY));

    FlightTestClient.Exchange result =
        client.exchange("ident", headers(udf), schema(arrow), oneBatch(values));

    assertThat(result.batches()).containsExactly(values);
    Field output = result.schema().getFields().get(0);
    assertThat(output.getName()).isEqualTo("output");
    assertThat(output.isNullable()).isTrue();
    assertThat(output.getType()).isEqualTo(ArrowTypes.arrowType(Udfs.type(type)));
  }

  @Test
  void notNullResultsAreSentNotNullable() throws Exception {
    Udf udf =
        ready(
            Udfs.spec("ident", List.of("VARCHAR NULL"), "VARCHAR NOT NULL", RunnerPoolIT.IDENTITY));

    FlightTestClient.Exchange result =
        client.exchange(
            "ident",
            headers(udf),
            schema(ArrowType.Utf8View.INSTANCE),
            oneBatch(List.of("a", "bb")));

    assertThat(result.batches()).containsExactly(List.of("a", "bb"));
    assertThat(result.schema().getFields().get(0).isNullable()).isFalse();
    assertThat(result.schema().getFields().get(0).getType())
        .isEqualTo(ArrowType.LargeUtf8.INSTANCE);
  }

  @Test
  void oneResultBatchPerInputBatchAndNoneForNone() throws Exception {
    Udf udf =
        ready(
            Udfs.spec(
                "add",
                List.of("BIGINT", "BIGINT"),
                "BIGINT",
                "def add(a, b):\n    return a + b\n"));
    Schema in = schema(INT64, INT64);

    FlightTestClient.Exchange three =
        client.exchange(
            "add",
            headers(udf),
            in,
            List.of(
                List.of(List.of(1L, 2L), List.of(10L, 20L)),
                List.of(List.of(5L), List.of(5L)),
                List.of(List.of(), List.of())));
    assertThat(three.batches()).containsExactly(List.of(11L, 22L), List.of(10L), List.of());

    FlightTestClient.Exchange none = client.exchange("add", headers(udf), in, List.of());
    assertThat(none.batches()).isEmpty();
    assertThat(none.schema().getFields()).extracting(Field::getName).containsExactly("output");
  }

  // ---------------------------------------------------------------- errors from the UDF

  @Test
  void aPythonExceptionReachesTheClientWithTypeMessageAndLine() throws Exception {
    Udf udf =
        ready(
            Udfs.spec(
                "divide",
                List.of("BIGINT", "BIGINT"),
                "BIGINT",
                "def divide(a, b):\n    q = a // b\n    return q\n"));

    assertThatThrownBy(
            () ->
                client.exchange(
                    "divide",
                    headers(udf),
                    schema(INT64, INT64),
                    oneBatch(List.of(4L, 1L), List.of(2L, 0L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.UNKNOWN))
        .hasMessageContaining("ZeroDivisionError: integer division or modulo by zero")
        .hasMessageContaining("udf.py line 2, in divide: q = a // b")
        .hasMessageContaining("row 1 of the batch, arguments (1, 0)");
    assertThat(client.lastStatus().getCode()).isEqualTo(Status.Code.UNKNOWN);
    assertThat(
            meters
                .get("kiln.worker.errors")
                .tags("handler", "divide", "kind", "UDF_RAISED")
                .counter()
                .count())
        .isEqualTo(1.0);
  }

  @Test
  void anAbortIsAClearCrashAndTheNextCallWorks() throws Exception {
    Udf udf =
        ready(
            Udfs.spec(
                "boom",
                List.of("BIGINT"),
                "BIGINT",
                "import os\n\ndef boom(x):\n    if x == 42:\n        os.abort()\n    return x\n"));

    assertThatThrownBy(
            () -> client.exchange("boom", headers(udf), schema(INT64), oneBatch(List.of(42L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.INTERNAL))
        .hasMessageContaining("the UDF process died while computing this batch (killed by SIGABRT)")
        .hasMessageContaining("Fatal Python error: Aborted");

    assertThat(
            client.exchange("boom", headers(udf), schema(INT64), oneBatch(List.of(1L))).batches())
        .containsExactly(List.of(1L));
  }

  @Test
  void aSlowBatchTimesOut() throws Exception {
    Udf udf =
        ready(
            Udfs.spec(
                "slow",
                List.of("BIGINT"),
                "BIGINT",
                "import time\n\ndef slow(x):\n    time.sleep(x)\n    return x\n"),
            new RunnerPool.Options(1, Duration.ofSeconds(30), Duration.ofSeconds(1), 50));

    assertThatThrownBy(
            () -> client.exchange("slow", headers(udf), schema(INT64), oneBatch(List.of(600L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.TIMED_OUT))
        .hasMessageContaining("the UDF did not return within 1 s");
    assertThat(client.lastStatus().getCode()).isEqualTo(Status.Code.DEADLINE_EXCEEDED);
  }

  @Test
  void aLoadFailureIsFailedPreconditionWithTheReason() throws Exception {
    Udf udf = register(Udfs.spec("f", List.of("BIGINT"), "BIGINT", "def f(x):\n    return x +\n"));
    try {
      startPool(udf, RunnerPool.Options.defaults());
      throw new AssertionError("the pool should not start");
    } catch (KilnException e) {
      udf.handle().ready.completeExceptionally(e);
    }

    assertThatThrownBy(
            () -> client.exchange("f", headers(udf), schema(INT64), oneBatch(List.of(1L))))
        .isInstanceOf(FlightRuntimeException.class)
        .hasMessageContaining(
            "the UDF code failed to load: SyntaxError: invalid syntax (udf.py line 2");
    assertThat(client.lastStatus().getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION);
  }

  @Test
  void inputThatDoesNotMatchTheSignatureIsInvalidArgument() throws Exception {
    Udf udf = ready(Udfs.spec("ident", List.of("VARCHAR"), "VARCHAR", RunnerPoolIT.IDENTITY));

    assertThatThrownBy(
            () -> client.exchange("ident", headers(udf), schema(INT64), oneBatch(List.of(1L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.INVALID_ARGUMENT))
        .hasMessageContaining(
            "argument arg1 is declared STRING NULL, but the call sends Arrow Int64");
    assertThatThrownBy(
            () ->
                client.exchange(
                    "ident",
                    headers(udf),
                    schema(ArrowType.Utf8.INSTANCE, ArrowType.Utf8.INSTANCE),
                    oneBatch(List.of("a"), List.of("b"))))
        .hasMessageContaining("takes 1 argument(s), but the call sends 2 column(s)");
  }

  // ---------------------------------------------------------------- tokens and tenants

  @Test
  void aMissingTokenIsUnauthenticated() throws Exception {
    Udf udf = ready(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", RunnerPoolIT.IDENTITY));
    Map<String, String> h = headers(udf);
    h.remove(Tokens.HEADER);

    assertThatThrownBy(() -> client.exchange("ident", h, schema(INT64), oneBatch(List.of(1L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.UNAUTHENTICATED))
        .hasMessageContaining(
            "missing x-kiln-token header; pass every header ApplyUdfResource returned");
  }

  @Test
  void aBadTokenIsUnauthenticated() throws Exception {
    Udf udf = ready(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", RunnerPoolIT.IDENTITY));
    Map<String, String> forged = headers(udf);
    byte[] otherSecret = new byte[32];
    Arrays.fill(otherSecret, (byte) 7);
    forged.put(Tokens.HEADER, new Tokens(otherSecret).issue(new Tenant(TENANT), udf.key()));
    Map<String, String> garbage = headers(udf);
    garbage.put(Tokens.HEADER, "not-a-token");

    for (Map<String, String> h : List.of(forged, garbage)) {
      assertThatThrownBy(() -> client.exchange("ident", h, schema(INT64), oneBatch(List.of(1L))))
          .isInstanceOfSatisfying(
              FlightRuntimeException.class,
              e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.UNAUTHENTICATED))
          .hasMessageContaining("is not a token of this Kiln server");
    }
  }

  @Test
  void anotherTenantIsPermissionDenied() throws Exception {
    Udf udf = ready(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", RunnerPoolIT.IDENTITY));
    Map<String, String> h = headers(udf);
    h.put("x-databend-tenant", "tenant-b");

    assertThatThrownBy(() -> client.exchange("ident", h, schema(INT64), oneBatch(List.of(1L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.UNAUTHORIZED))
        .hasMessageContaining(
            "the token belongs to tenant 'tenant-a', but the call comes from tenant 'tenant-b'");
    assertThat(client.lastStatus().getCode()).isEqualTo(Status.Code.PERMISSION_DENIED);

    h.remove("x-databend-tenant");
    assertThatThrownBy(() -> client.exchange("ident", h, schema(INT64), oneBatch(List.of(1L))))
        .hasMessageContaining("no x-databend-tenant header");
  }

  @Test
  void theResponseStartsWithItsFirstResultSoACallThatFailsComputingCanBeRetried() throws Exception {
    // Databend retries a call that breaks before the response headers, not one that breaks after.
    String code = "import os\n\ndef quit(x):\n    if x == 13:\n        os._exit(3)\n    return x\n";
    Udf udf = ready(Udfs.spec("quit", List.of("BIGINT"), "BIGINT", code));

    client.exchange("quit", headers(udf), schema(INT64), oneBatch(List.of(1L)));
    assertThat(client.lastHadHeaders()).as("a call with a result has response headers").isTrue();

    assertThatThrownBy(
            () -> client.exchange("quit", headers(udf), schema(INT64), oneBatch(List.of(13L))))
        .isInstanceOf(FlightRuntimeException.class)
        .hasMessageContaining("exit");
    assertThat(client.lastHadHeaders())
        .as("response headers went out before the runner computed anything")
        .isFalse();
  }

  @Test
  void anUnknownResourceIsNotFound() throws Exception {
    Map<String, String> h = new HashMap<>();
    h.put(Tokens.HEADER, tokens.issue(new Tenant(TENANT), new ContentKey("ab".repeat(32))));
    h.put("x-databend-tenant", TENANT);

    assertThatThrownBy(() -> client.exchange("ident", h, schema(INT64), oneBatch(List.of(1L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.NOT_FOUND))
        .hasMessageContaining("this Kiln server has no record of that UDF resource");
  }

  @Test
  void theHandlerMustBeTheTokensHandler() throws Exception {
    Udf udf = ready(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", RunnerPoolIT.IDENTITY));

    assertThatThrownBy(
            () -> client.exchange("other", headers(udf), schema(INT64), oneBatch(List.of(1L))))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.INVALID_ARGUMENT))
        .hasMessageContaining(
            "the call asks for handler 'other', but its token is for a UDF whose handler is"
                + " 'ident'");
  }

  // ---------------------------------------------------------------- readiness

  @Test
  void aCallBeforeTheUdfIsReadyWaitsAndSucceeds() throws Exception {
    Udf udf = register(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", RunnerPoolIT.IDENTITY));

    CompletableFuture<FlightTestClient.Exchange> call =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                return client.exchange("ident", headers(udf), schema(INT64), oneBatch(List.of(7L)));
              } catch (Exception e) {
                throw new RuntimeException(e);
              }
            });
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
    while (udf.handle().readyCalls.get() == 0 && System.nanoTime() < deadline) {
      LockSupport.parkNanos(1_000_000);
    }
    assertThat(udf.handle().readyCalls.get()).as("the call reached the wait").isPositive();
    assertThat(call).isNotDone();

    udf.handle().ready.complete(startPool(udf, RunnerPool.Options.defaults()));

    assertThat(call.get(30, TimeUnit.SECONDS).batches()).containsExactly(List.of(7L));
  }

  @Test
  void aUdfThatStaysNotReadyIsUnavailableAfterTheWait() throws Exception {
    try (FlightEndpoint shortWait = startEndpoint(Duration.ofSeconds(1));
        FlightTestClient shortClient = new FlightTestClient(allocator, shortWait.port())) {
      Udf udf = register(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", RunnerPoolIT.IDENTITY));

      assertThatThrownBy(
              () ->
                  shortClient.exchange("ident", headers(udf), schema(INT64), oneBatch(List.of(1L))))
          .isInstanceOfSatisfying(
              FlightRuntimeException.class,
              e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.UNAVAILABLE))
          .hasMessageContaining("the UDF is still starting after 1 s");
    }
  }

  // ---------------------------------------------------------------- builtins and GetFlightInfo

  @Test
  void builtinsNeedNoTokenAndNoSandbox() throws Exception {
    FlightTestClient.Exchange healthy =
        client.exchange("builtin_healthy", Map.of(), new Schema(List.of()), oneBatch(List.of(3)));
    assertThat(healthy.batches()).containsExactly(List.of(1L, 1L, 1L));
    assertThat(healthy.schema().getFields().get(0).getType())
        .isEqualTo(new ArrowType.Int(32, true));

    List<Object> words = Arrays.asList("hello", null, "a longer string than twelve bytes");
    FlightTestClient.Exchange echo =
        client.exchange(
            "builtin_echo", Map.of(), schema(ArrowType.Utf8View.INSTANCE), oneBatch(words));
    assertThat(echo.batches()).containsExactly(words);
  }

  @Test
  void getFlightInfoDescribesTheSignatureAsDatabendUdfDoes() throws Exception {
    Udf udf =
        ready(
            Udfs.spec(
                "f",
                List.of("BIGINT NULL", "VARCHAR NOT NULL"),
                "DOUBLE NOT NULL",
                "def f(a, b):\n    return 1.0\n"));

    FlightInfo info = client.info("f", headers(udf));

    Schema schema = info.getSchemaOptional().orElseThrow();
    assertThat(schema.getCustomMetadata()).containsEntry("x-databend-udf-input-count", "2");
    assertThat(schema.getFields())
        .containsExactly(
            new Field("arg1", FieldType.nullable(INT64), null),
            new Field("arg2", FieldType.notNullable(ArrowType.LargeUtf8.INSTANCE), null),
            new Field(
                "output",
                FieldType.notNullable(new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE)),
                null));

    Schema echo = client.info("builtin_echo", Map.of()).getSchemaOptional().orElseThrow();
    assertThat(echo.getCustomMetadata()).containsEntry("x-databend-udf-input-count", "1");

    assertThatThrownBy(() -> client.info("f", Map.of("x-databend-tenant", TENANT)))
        .isInstanceOfSatisfying(
            FlightRuntimeException.class,
            e -> assertThat(e.status().code()).isEqualTo(FlightStatusCode.UNAUTHENTICATED));
  }

  @Test
  void metricsCountRowsBatchesAndLatencyByHandler() throws Exception {
    Udf udf = ready(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", RunnerPoolIT.IDENTITY));

    client.exchange(
        "ident",
        headers(udf),
        schema(INT64),
        List.of(List.of(List.of(1L, 2L, 3L)), List.of(List.of(4L))));

    assertThat(meters.get("kiln.worker.rows").tag("handler", "ident").counter().count())
        .isEqualTo(4.0);
    assertThat(meters.get("kiln.worker.batches").tag("handler", "ident").counter().count())
        .isEqualTo(2.0);
    assertThat(meters.get("kiln.worker.batch.latency").tag("handler", "ident").timer().count())
        .isEqualTo(2);
  }

  // ---------------------------------------------------------------- Query's wire types

  /**
   * Databend Query sends DECIMAL(p ≤ 18) as Decimal64, which Arrow Java cannot read or write; the
   * call is written byte by byte (a BigIntVector carries Decimal64's 8-byte values), top-level and
   * inside an ARRAY, and the endpoint must compute it like any other.
   */
  @Test
  void decimal64FromDatabendQueryIsRead() throws Exception {
    String code = "def f(d, a):\n    return [d] + (a or [])\n";
    Udf udf =
        ready(
            Udfs.spec(
                "f",
                List.of("DECIMAL(15, 2) NULL", "ARRAY(DECIMAL(15, 2)) NULL"),
                "ARRAY(DECIMAL(15, 2) NULL) NULL",
                code));
    Schema declared =
        new Schema(
            List.of(
                new Field("arg1", FieldType.nullable(new ArrowType.Decimal(15, 2, 64)), null),
                new Field(
                    "arg2",
                    FieldType.nullable(ArrowType.LargeList.INSTANCE),
                    List.of(
                        new Field(
                            "_array",
                            FieldType.notNullable(new ArrowType.Decimal(15, 2, 64)),
                            null)))));
    Field bigints =
        new Field(
            "arg2",
            FieldType.nullable(ArrowType.LargeList.INSTANCE),
            List.of(new Field("_array", FieldType.notNullable(INT64), null)));
    try (org.apache.arrow.vector.VectorSchemaRoot batch =
        new org.apache.arrow.vector.VectorSchemaRoot(
            List.of(
                Vectors.of(allocator, "arg1", INT64, Arrays.asList(12345L, null, -1L)),
                Vectors.of(
                    allocator,
                    bigints,
                    Arrays.asList(List.of(1L, 999999999999999L), null, List.of()))))) {
      batch.setRowCount(3);

      RawFlightExchange.Outcome out =
          RawFlightExchange.exchange(
              allocator, endpoint.port(), "f", headers(udf), declared, batch);

      assertThat(out.error()).isEqualTo(Status.OK);
      try (org.apache.arrow.vector.VectorSchemaRoot root = out.root()) {
        assertThat(root.getRowCount()).isEqualTo(3);
        assertThat(Vectors.values(root.getVector(0)))
            .containsExactly(
                List.of(
                    new java.math.BigDecimal("123.45"),
                    new java.math.BigDecimal("0.01"),
                    new java.math.BigDecimal("9999999999999.99")),
                Arrays.asList((Object) null),
                List.of(new java.math.BigDecimal("-0.01")));
      }
    }
  }

  @Test
  void decimal64OfAnotherScaleIsRefusedByName() throws Exception {
    Udf udf = ready(Udfs.spec("f", List.of("DECIMAL(15, 2)"), "INT", "def f(d):\n    return 1\n"));
    Schema declared =
        new Schema(
            List.of(new Field("arg1", FieldType.nullable(new ArrowType.Decimal(15, 3, 64)), null)));
    try (org.apache.arrow.vector.VectorSchemaRoot batch =
        new org.apache.arrow.vector.VectorSchemaRoot(
            List.of(Vectors.of(allocator, "arg1", INT64, List.of(1L))))) {
      batch.setRowCount(1);

      RawFlightExchange.Outcome out =
          RawFlightExchange.exchange(
              allocator, endpoint.port(), "f", headers(udf), declared, batch);

      assertThat(out.error().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
      assertThat(out.error().getDescription())
          .contains("argument arg1 is declared DECIMAL(15, 2) NULL")
          .contains("the call sends Arrow Decimal64(15, 3)");
    }
  }

  @Test
  void nestedTypesTravelThroughFlight() throws Exception {
    String type = "TUPLE(1 MAP(STRING, ARRAY(INT64 NULL)), 2 VECTOR(2)) NULL";
    Udf udf = ready(Udfs.spec("ident", List.of(type), type, RunnerPoolIT.IDENTITY));
    Field field = ArrowTypes.queryArgumentField("arg1", Udfs.type(type));
    List<Object> values =
        Arrays.asList(
            List.of(
                RunnerTypesIT.map("a", Arrays.asList(1L, null), "b", List.of()), List.of(1f, 2f)),
            null);
    try (org.apache.arrow.vector.VectorSchemaRoot batch =
        new org.apache.arrow.vector.VectorSchemaRoot(
            List.of(Vectors.of(allocator, field, values)))) {
      batch.setRowCount(2);

      RawFlightExchange.Outcome out =
          RawFlightExchange.exchange(
              allocator, endpoint.port(), "ident", headers(udf), batch.getSchema(), batch);

      assertThat(out.error()).isEqualTo(Status.OK);
      try (org.apache.arrow.vector.VectorSchemaRoot root = out.root()) {
        assertThat(root.getSchema().getFields().get(0))
            .isEqualTo(ArrowTypes.field("output", Udfs.type(type)));
        assertThat(Vectors.values(root.getVector(0))).isEqualTo(values);
      }
    }
  }
}
