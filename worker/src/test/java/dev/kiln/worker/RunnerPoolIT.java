package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.RuntimeSpec;
import java.math.BigInteger;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.stream.IntStream;
import java.util.stream.Stream;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** RunnerPool against real Python runner processes on the host. */
class RunnerPoolIT {

  static final String IDENTITY = "def ident(x):\n    return x\n";

  @TempDir Path dir;
  private BufferAllocator allocator;
  private final List<RunnerPool> pools = new ArrayList<>();
  private final AtomicInteger dirs = new AtomicInteger();
  private HostRunnerLauncher launcher;

  @BeforeEach
  void setUp() {
    allocator = new RootAllocator();
  }

  @AfterEach
  void tearDown() {
    pools.forEach(RunnerPool::close);
    allocator.close(); // fails the test on a leaked buffer
  }

  private RunnerPool start(RuntimeSpec spec, RunnerPool.Options options) throws Exception {
    launcher = new HostRunnerLauncher(dir.resolve("udf" + dirs.incrementAndGet()), spec);
    RunnerPool pool = RunnerPool.start(UdfSignature.of(spec), launcher, options);
    pools.add(pool);
    return pool;
  }

  private RunnerPool start(RuntimeSpec spec) throws Exception {
    return start(spec, RunnerPool.Options.defaults());
  }

  /** Calls the pool with one column per list; closes everything but returns the values. */
  private List<Object> call(RunnerPool pool, List<ArrowType> types, List<?>... columns)
      throws Exception {
    List<FieldVector> inputs = new ArrayList<>();
    try {
      for (int i = 0; i < columns.length; i++) {
        inputs.add(Vectors.of(allocator, "arg" + (i + 1), types.get(i), columns[i]));
      }
      int rows = columns.length == 0 ? 0 : columns[0].size();
      try (FieldVector out = pool.call(inputs, rows, allocator)) {
        assertThat(out.getField().getName()).isEqualTo("output");
        assertThat(out.getValueCount()).isEqualTo(rows);
        return Vectors.values(out);
      }
    } finally {
      inputs.forEach(FieldVector::close);
    }
  }

  private static final ArrowType INT64 = new ArrowType.Int(64, true);

  static Stream<Arguments> types() {
    BigInteger u64max = new BigInteger("18446744073709551615");
    byte[] longBytes = new byte[40];
    Arrays.fill(longBytes, (byte) 0xAB);
    return Stream.of(
        Arguments.of(
            "BOOLEAN NULL", ArrowType.Bool.INSTANCE, Arrays.asList(true, false, null, true)),
        Arguments.of(
            "TINYINT NULL", new ArrowType.Int(8, true), Arrays.asList(-128L, 127L, null, 0L)),
        Arguments.of(
            "SMALLINT NULL", new ArrowType.Int(16, true), Arrays.asList(-32768L, 32767L, null)),
        Arguments.of(
            "INT NULL",
            new ArrowType.Int(32, true),
            Arrays.asList((long) Integer.MIN_VALUE, (long) Integer.MAX_VALUE, null)),
        Arguments.of("BIGINT NULL", INT64, Arrays.asList(Long.MIN_VALUE, Long.MAX_VALUE, null, 0L)),
        Arguments.of(
            "TINYINT UNSIGNED NULL", new ArrowType.Int(8, false), Arrays.asList(0L, 255L, null)),
        Arguments.of("UINT16 NULL", new ArrowType.Int(16, false), Arrays.asList(0L, 65535L, null)),
        Arguments.of(
            "INT UNSIGNED NULL",
            new ArrowType.Int(32, false),
            Arrays.asList(0L, 4294967295L, null)),
        Arguments.of(
            "BIGINT UNSIGNED NULL",
            new ArrowType.Int(64, false),
            Arrays.asList(BigInteger.ZERO, u64max, null)),
        Arguments.of(
            "FLOAT NULL",
            new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE),
            Arrays.asList(1.5f, -0.0f, Float.MAX_VALUE, Float.NaN, null)),
        Arguments.of(
            "DOUBLE NULL",
            new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE),
            Arrays.asList(Math.PI, Double.MIN_VALUE, Double.NEGATIVE_INFINITY, Double.NaN, null)),
        Arguments.of("VARCHAR NULL", ArrowType.Utf8View.INSTANCE, strings()),
        Arguments.of("VARCHAR NULL", ArrowType.Utf8.INSTANCE, strings()),
        Arguments.of("STRING NULL", ArrowType.LargeUtf8.INSTANCE, strings()),
        Arguments.of(
            "BINARY NULL",
            ArrowType.LargeBinary.INSTANCE,
            Arrays.asList(Vectors.boxed(new byte[] {0, 1, 2, (byte) 255}), List.of(), null)),
        Arguments.of(
            "BINARY NULL",
            ArrowType.BinaryView.INSTANCE,
            Arrays.asList(Vectors.boxed(longBytes), null, Vectors.boxed(new byte[] {7}))),
        Arguments.of(
            "BINARY NULL",
            ArrowType.Binary.INSTANCE,
            Arrays.asList(null, Vectors.boxed(longBytes), List.of())));
  }

  private static List<Object> strings() {
    return Arrays.asList(
        "", "short", "a string longer than twelve bytes", null, "ünïcødé ✓ 日本語", "\0nul");
  }

  @ParameterizedTest(name = "{0} from Arrow {1}")
  @MethodSource("types")
  void valuesAndNullsRoundTrip(String type, ArrowType arrow, List<Object> values) throws Exception {
    RunnerPool pool = start(Udfs.spec("ident", List.of(type), type, IDENTITY));

    assertThat(call(pool, List.of(arrow), values)).isEqualTo(values);
  }

  @Test
  void argumentsArriveAsTheirPythonTypes() throws Exception {
    String code = "def kind(*args):\n    return ','.join(type(a).__name__ for a in args)\n";
    RunnerPool pool =
        start(
            Udfs.spec(
                "kind",
                List.of("BOOLEAN", "BIGINT", "DOUBLE", "VARCHAR", "BINARY"),
                "VARCHAR NOT NULL",
                code));

    List<Object> out =
        call(
            pool,
            List.of(
                ArrowType.Bool.INSTANCE,
                INT64,
                new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE),
                ArrowType.Utf8View.INSTANCE,
                ArrowType.LargeBinary.INSTANCE),
            Arrays.asList(true, null),
            Arrays.asList(1L, null),
            Arrays.asList(1.0, null),
            Arrays.asList("x", null),
            Arrays.asList(List.of((byte) 1), null));

    assertThat(out)
        .containsExactly(
            "bool,int,float,str,bytes", "NoneType,NoneType,NoneType,NoneType,NoneType");
  }

  @Test
  void notNullResultsAreNotNullable() throws Exception {
    RunnerPool pool =
        start(Udfs.spec("ident", List.of("BIGINT NULL"), "BIGINT NOT NULL", IDENTITY));

    List<FieldVector> inputs = List.of(Vectors.of(allocator, "arg1", INT64, List.of(1L, 2L)));
    try (FieldVector out = pool.call(inputs, 2, allocator)) {
      assertThat(out.getField().isNullable()).isFalse();
      assertThat(out.getField().getType()).isEqualTo(INT64);
      assertThat(Vectors.values(out)).containsExactly(1L, 2L);
    } finally {
      inputs.forEach(FieldVector::close);
    }
    assertThatThrownBy(() -> call(pool, List.of(INT64), Arrays.asList(1L, null)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_RAISED))
        .hasMessageContaining("returned None for row 1")
        .hasMessageContaining("INT64 NOT NULL");
  }

  @Test
  void zeroArgumentsAndZeroRows() throws Exception {
    RunnerPool pool = start(Udfs.spec("one", List.of(), "INT", "def one():\n    return 1\n"));
    try (FieldVector out = pool.call(List.of(), 3, allocator)) {
      assertThat(Vectors.values(out)).containsExactly(1L, 1L, 1L);
    }
    try (FieldVector out = pool.call(List.of(), 0, allocator)) {
      assertThat(out.getValueCount()).isZero();
    }
  }

  @Test
  void largeBatchesOfStringsDoNotBlockThePipes() throws Exception {
    RunnerPool pool =
        start(
            Udfs.spec(
                "up",
                List.of("VARCHAR"),
                "VARCHAR",
                "def up(s):\n    return None if s is None else s.upper() * 3\n"));
    List<Object> in = new ArrayList<>();
    List<Object> expected = new ArrayList<>();
    for (int i = 0; i < 65_536; i++) {
      String s = i % 97 == 0 ? null : "row-" + i + "-é".repeat(i % 7);
      in.add(s);
      expected.add(s == null ? null : s.toUpperCase().repeat(3));
    }

    assertThat(call(pool, List.of(ArrowType.Utf8View.INSTANCE), in)).isEqualTo(expected);
  }

  @Test
  void aPythonExceptionNamesTypeMessageLineRowAndArguments() throws Exception {
    String code = "def divide(a, b):\n    q = a // b\n    return q\n";
    RunnerPool pool = start(Udfs.spec("divide", List.of("BIGINT", "BIGINT"), "BIGINT", code));

    assertThatThrownBy(
            () -> call(pool, List.of(INT64, INT64), List.of(6L, 1L, 1L), List.of(3L, 1L, 0L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_RAISED))
        .hasMessageContaining("ZeroDivisionError: integer division or modulo by zero")
        .hasMessageContaining("udf.py line 2, in divide: q = a // b")
        .hasMessageContaining("row 2 of the batch")
        .hasMessageContaining("arguments (1, 0)");
    // The runner survives a user error: same process, next call fine.
    assertThat(call(pool, List.of(INT64, INT64), List.of(6L), List.of(3L))).containsExactly(2L);
    assertThat(launcher.started()).hasSize(1);
  }

  @Test
  void anExceptionDeepInsideNamesTheLastLineInUdfPy() throws Exception {
    String code = "import json\n\ndef parse(s):\n    return len(json.loads(s))\n";
    RunnerPool pool = start(Udfs.spec("parse", List.of("VARCHAR"), "BIGINT", code));

    assertThatThrownBy(() -> call(pool, List.of(ArrowType.Utf8View.INSTANCE), List.of("[1]", "{")))
        .hasMessageStartingWith("json.decoder.JSONDecodeError: Expecting property name")
        .hasMessageContaining("udf.py line 4, in parse")
        .hasMessageContaining("row 1 of the batch, arguments ('{',)");
  }

  @Test
  void wrongResultValuesAreNamedWithRowAndType() throws Exception {
    RunnerPool text =
        start(
            Udfs.spec("f", List.of("BIGINT"), "BIGINT", "def f(x):\n    return 'a' if x else x\n"));
    assertThatThrownBy(() -> call(text, List.of(INT64), List.of(0L, 5L)))
        .hasMessageContaining("returned str 'a' for row 1")
        .hasMessageContaining("INT64 NULL (expected int)");

    RunnerPool range =
        start(Udfs.spec("g", List.of("BIGINT"), "TINYINT", "def g(x):\n    return x * 100\n"));
    assertThatThrownBy(() -> call(range, List.of(INT64), List.of(1L, 2L)))
        .hasMessageContaining("returned int 200 for row 1")
        .hasMessageContaining("out of range for INT8");

    RunnerPool bytes =
        start(Udfs.spec("h", List.of("BIGINT"), "VARCHAR", "def h(x):\n    return b'x'\n"));
    assertThatThrownBy(() -> call(bytes, List.of(INT64), List.of(1L)))
        .hasMessageContaining("returned bytes b'x' for row 0")
        .hasMessageContaining("(expected str)");
  }

  @Test
  void anAbortFailsOnlyThatCallAndTheRunnerIsReplaced() throws Exception {
    String code =
        "import os\n\ndef boom(x):\n    if x == 42:\n        print('about to abort', flush=True)\n"
            + "        os.abort()\n    return x\n";
    RunnerPool pool = start(Udfs.spec("boom", List.of("BIGINT"), "BIGINT", code));

    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1L, 42L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.RUNNER_CRASHED))
        .hasMessageContaining("the UDF process died while computing this batch (killed by SIGABRT)")
        .hasMessageContaining("restarted")
        .hasMessageContaining("about to abort")
        .hasMessageContaining("Fatal Python error: Aborted");

    assertThat(call(pool, List.of(INT64), List.of(1L, 2L))).containsExactly(1L, 2L);
    assertThat(launcher.started()).hasSize(2);
    assertThat(pool.isHealthy()).isTrue();
  }

  @Test
  void anExitNamesTheStatus() throws Exception {
    String code = "import os\n\ndef quit(x):\n    os._exit(3)\n";
    RunnerPool pool = start(Udfs.spec("quit", List.of("BIGINT"), "BIGINT", code));

    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1L)))
        .hasMessageContaining("(exited with status 3)");
  }

  @Test
  void aSlowBatchTimesOutAndTheRunnerIsReplaced() throws Exception {
    String code = "import time\n\ndef slow(x):\n    time.sleep(x)\n    return x\n";
    RunnerPool pool =
        start(
            Udfs.spec("slow", List.of("BIGINT"), "BIGINT", code),
            new RunnerPool.Options(1, Duration.ofSeconds(30), Duration.ofSeconds(1), 50));

    long started = System.nanoTime();
    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(600L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.BATCH_TIMEOUT))
        .hasMessageContaining("did not return within 1 s for a batch of 1 rows");
    assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(20));

    assertThat(call(pool, List.of(INT64), List.of(0L))).containsExactly(0L);
    assertThat(launcher.started()).hasSize(2);
    assertThat(launcher.started().get(0).waitFor(10, TimeUnit.SECONDS)).isTrue();
  }

  @Test
  void printsGoToTheOutputTailNotTheDataStream() throws Exception {
    String code =
        "import os, sys\n\ndef f(x):\n    print('hello from', x)\n    sys.stdout.write('raw\\n')\n"
            + "    os.write(1, b'fd one\\n')\n    sys.stderr.write('on stderr\\n')\n"
            + "    assert sys.stdin.read() == ''\n    return x\n";
    RunnerPool pool = start(Udfs.spec("f", List.of("BIGINT"), "BIGINT", code));

    assertThat(call(pool, List.of(INT64), List.of(7L))).containsExactly(7L);
    assertThat(call(pool, List.of(INT64), List.of(8L))).containsExactly(8L);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!pool.recentOutput().contains("hello from 8") && System.nanoTime() < deadline) {
      LockSupport.parkNanos(1_000_000);
    }
    assertThat(pool.recentOutput())
        .contains("hello from 7", "raw", "fd one", "on stderr", "hello from 8");
  }

  @Test
  void outputTailIsBounded() throws Exception {
    String code = "def f(x):\n    for i in range(x):\n        print('line', i)\n    return x\n";
    RunnerPool pool =
        start(
            Udfs.spec("f", List.of("BIGINT"), "BIGINT", code),
            new RunnerPool.Options(1, Duration.ofSeconds(30), Duration.ofSeconds(30), 5));

    assertThat(call(pool, List.of(INT64), List.of(1000L))).containsExactly(1000L);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (!pool.recentOutput().contains("line 999") && System.nanoTime() < deadline) {
      LockSupport.parkNanos(1_000_000);
    }
    assertThat(pool.recentOutput())
        .containsExactly("line 995", "line 996", "line 997", "line 998", "line 999");
  }

  @Test
  void loadErrorsSayWhatIsWrong() {
    assertLoadFails(
        Udfs.spec("f", List.of("INT"), "INT", "def f(x)\n    return x\n"),
        "the UDF code failed to load: SyntaxError: expected ':' (udf.py line 1: def f(x))");
    assertLoadFails(
        Udfs.spec("g", List.of("INT"), "INT", "def f(x):\n    return x\n"),
        "udf.py defines no top-level function named 'g'");
    assertLoadFails(
        Udfs.spec("f", List.of("INT"), "INT", "\nx = undefined_name\n"),
        "NameError: name 'undefined_name' is not defined (udf.py line 2: x = undefined_name)");
    assertLoadFails(
        Udfs.spec("f", List.of("INT"), "INT", "import no_such_module_for_kiln\n"),
        "ModuleNotFoundError: No module named 'no_such_module_for_kiln' (udf.py line 1");
    assertLoadFails(
        Udfs.spec("f", List.of("INT", "INT"), "INT", "def f(x):\n    return x\n"),
        "the function f(x) cannot be called with the 2 argument(s) of its SQL signature");
    assertLoadFails(
        Udfs.spec("f", List.of("INT"), "INT", "f = 3\n"), "'f' in udf.py is a int, not a function");
  }

  private void assertLoadFails(RuntimeSpec spec, String message) {
    assertThatThrownBy(() -> start(spec))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_LOAD_FAILED))
        .hasMessageContaining(message);
  }

  @Test
  void aProcessThatDiesWhileLoadingIsALoadFailureWithItsOutput() {
    assertThatThrownBy(
            () ->
                start(
                    Udfs.spec(
                        "f",
                        List.of("INT"),
                        "INT",
                        "import os, sys\n"
                            + "print('loading...', file=sys.stderr, flush=True)\n"
                            + "os._exit(5)\n")))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_LOAD_FAILED))
        .hasMessageContaining("the UDF process exited with status 5 before it was ready")
        .hasMessageContaining("loading...");
  }

  @Test
  void aRunnerThatDoesNotStartInTimeIsUnavailableAndKilled() throws Exception {
    long started = System.nanoTime();
    assertThatThrownBy(
            () ->
                start(
                    Udfs.spec("f", List.of("INT"), "INT", "import time\ntime.sleep(600)\n"),
                    new RunnerPool.Options(1, Duration.ofSeconds(1), Duration.ofSeconds(30), 50)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.SANDBOX_UNAVAILABLE))
        .hasMessageContaining("did not become ready within 1 s");
    assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(20));
    for (Process p : launcher.started()) {
      assertThat(p.waitFor(10, TimeUnit.SECONDS)).as("the runner was killed").isTrue();
    }
  }

  @Test
  void inputsThatDoNotMatchTheSignatureAreBadInput() throws Exception {
    RunnerPool pool = start(Udfs.spec("ident", List.of("BIGINT"), "BIGINT", IDENTITY));

    assertThatThrownBy(() -> call(pool, List.of(ArrowType.Utf8.INSTANCE), List.of("x")))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.ARGUMENTS_MISMATCH))
        .hasMessageContaining("argument arg1 is declared INT64 NULL but arrived as Arrow Utf8");
    assertThatThrownBy(() -> call(pool, List.of(INT64, INT64), List.of(1L), List.of(2L)))
        .hasMessageContaining("takes 1 argument(s), but the call has 2 column(s)");
  }

  @Test
  void concurrentCallsUseEveryRunner() throws Exception {
    String code = "import os, time\n\ndef pid(x):\n    time.sleep(0.3)\n    return os.getpid()\n";
    RunnerPool pool =
        start(
            Udfs.spec("pid", List.of("BIGINT"), "BIGINT", code),
            new RunnerPool.Options(2, Duration.ofSeconds(30), Duration.ofSeconds(30), 50));
    assertThat(launcher.started()).hasSize(2);

    List<Callable<Object>> calls = new ArrayList<>();
    for (int i = 0; i < 6; i++) {
      calls.add(() -> call(pool, List.of(INT64), List.of(1L)).get(0));
    }
    Set<Object> pids = new HashSet<>();
    try (ExecutorService threads = Executors.newFixedThreadPool(6)) {
      for (Future<Object> f : threads.invokeAll(calls)) {
        pids.add(f.get());
      }
    }
    Set<Object> expected = new HashSet<>();
    launcher.started().forEach(p -> expected.add(p.pid()));
    assertThat(pids).isEqualTo(expected);
  }

  @Test
  void closeEndsEveryRunner() throws Exception {
    RunnerPool pool =
        start(
            Udfs.spec("ident", List.of("BIGINT"), "BIGINT", IDENTITY),
            new RunnerPool.Options(2, Duration.ofSeconds(30), Duration.ofSeconds(30), 50));
    assertThat(pool.isHealthy()).isTrue();

    pool.close();

    for (Process p : launcher.started()) {
      assertThat(p.waitFor(10, TimeUnit.SECONDS)).isTrue();
      assertThat(p.exitValue()).isZero(); // stdin EOF, not a kill
    }
    assertThat(pool.isHealthy()).isFalse();
    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.SHUTTING_DOWN));
  }

  @Test
  void manyBatchesInARow() throws Exception {
    RunnerPool pool =
        start(
            Udfs.spec(
                "add",
                List.of("BIGINT", "BIGINT"),
                "BIGINT",
                "def add(a, b):\n    return a + b\n"));
    for (int batch = 0; batch < 20; batch++) {
      int base = batch * 1000;
      List<Long> a = IntStream.range(0, 1000).mapToObj(i -> (long) (base + i)).toList();
      List<Long> b = Collections.nCopies(1000, 1L);
      List<Object> expected = new ArrayList<>();
      a.forEach(x -> expected.add(x + 1));
      assertThat(call(pool, List.of(INT64, INT64), a, b)).isEqualTo(expected);
    }
  }

  // ---------------------------------------------------------------- isolation and observability

  @Test
  void aSegfaultFailsOnlyThatCallAndNamesTheSignal() throws Exception {
    String code =
        "import ctypes\n\ndef f(x):\n    if x == 13:\n        ctypes.string_at(0)\n    return x\n";
    RunnerPool pool = start(Udfs.spec("f", List.of("BIGINT"), "BIGINT", code));

    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1L, 13L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.RUNNER_CRASHED))
        .hasMessageContaining("(killed by SIGSEGV)")
        .hasMessageContaining("Fatal Python error: Segmentation fault");
    assertThat(call(pool, List.of(INT64), List.of(2L))).containsExactly(2L);
    assertThat(pool.stats().restarts()).isEqualTo(1);
  }

  @Test
  void aRunnerOverItsMemoryLimitFailsOnlyThatCallAndIsReplaced() throws Exception {
    String code = "def grow(mib):\n    block = bytearray(mib << 20)\n    return len(block) >> 20\n";
    RunnerPool pool =
        start(
            Udfs.spec("grow", List.of("BIGINT"), "BIGINT", code),
            RunnerPool.Options.defaults().withRunnerMemoryBytes(256L << 20));

    assertThat(call(pool, List.of(INT64), List.of(16L))).containsExactly(16L);
    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1024L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.RUNNER_CRASHED))
        .hasMessageContaining("the UDF process was killed: memory limit 256 MiB exceeded")
        .hasMessageContaining("MemoryError in udf.py line 2, in grow");
    assertThat(call(pool, List.of(INT64), List.of(16L))).containsExactly(16L);
    assertThat(launcher.started()).hasSize(2);
    assertThat(launcher.environments())
        .allSatisfy(env -> assertThat(env).contains("KILN_MEMORY_LIMIT=" + (256L << 20)));
  }

  @Test
  void memoryIsSharedOutAmongRunners() {
    assertThat(RunnerPool.Options.memoryPerRunner(512L << 20, 2)).isEqualTo(224L << 20);
    assertThat(RunnerPool.Options.memoryPerRunner(512L << 20, 16)).isEqualTo(64L << 20);
    assertThatThrownBy(() -> RunnerPool.Options.defaults().withRunnerMemoryBytes(1 << 20))
        .hasMessageContaining("at least 32 MiB");
  }

  @Test
  void aUserErrorQuotesWhatTheUdfPrinted() throws Exception {
    String code =
        "def f(x):\n    print('looking at', x)\n    print('no newline', end='')\n"
            + "    return 10 // (x - 3)\n";
    RunnerPool pool = start(Udfs.spec("f", List.of("BIGINT"), "BIGINT", code));

    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1L, 3L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_RAISED))
        .hasMessageContaining("ZeroDivisionError")
        .hasMessageContaining("row 1 of the batch")
        .hasMessageContaining("Last output of the UDF process:")
        .hasMessageContaining("looking at 3")
        .hasMessageContaining("no newline");
  }

  @Test
  void aCrashFailsOnlyTheCallItWasServingWhileOthersSucceed() throws Exception {
    String code =
        "import os, time\n\ndef f(x):\n    time.sleep(0.5)\n    if x == 13:\n"
            + "        os.abort()\n    return x\n";
    RunnerPool pool =
        start(
            Udfs.spec("f", List.of("BIGINT"), "BIGINT", code),
            new RunnerPool.Options(2, Duration.ofSeconds(30), Duration.ofSeconds(30), 50));

    try (ExecutorService threads = Executors.newFixedThreadPool(2)) {
      Future<List<Object>> crashing =
          threads.submit(() -> call(pool, List.of(INT64), List.of(13L)));
      Future<List<Object>> fine = threads.submit(() -> call(pool, List.of(INT64), List.of(7L)));
      assertThat(fine.get()).containsExactly(7L);
      assertThatThrownBy(crashing::get).hasMessageContaining("killed by SIGABRT");
    }
    assertThat(call(pool, List.of(INT64), List.of(8L))).containsExactly(8L);
    assertThat(pool.stats().restarts()).isEqualTo(1);
    assertThat(pool.stats().failedRequests()).isEqualTo(1);
  }

  @Test
  void manyConcurrentCallsAllComplete() throws Exception {
    String code = "def f(x, y):\n    return x * 1000 + y\n";
    RunnerPool pool =
        start(
            Udfs.spec("f", List.of("BIGINT", "BIGINT"), "BIGINT", code),
            new RunnerPool.Options(2, Duration.ofSeconds(30), Duration.ofSeconds(30), 50));
    int calls = 24;
    List<Callable<Boolean>> work = new ArrayList<>();
    for (int c = 0; c < calls; c++) {
      long id = c;
      work.add(
          () -> {
            int rows = 9_000 + (int) id;
            List<Long> xs = Collections.nCopies(rows, id);
            List<Long> ys = IntStream.range(0, rows).mapToObj(i -> (long) i).toList();
            List<Object> out = call(pool, List.of(INT64, INT64), xs, ys);
            for (int i = 0; i < rows; i++) {
              if ((long) out.get(i) != id * 1000 + i) {
                return false;
              }
            }
            return true;
          });
    }
    try (ExecutorService threads = Executors.newFixedThreadPool(calls)) {
      for (Future<Boolean> f : threads.invokeAll(work)) {
        assertThat(f.get()).isTrue();
      }
    }
    assertThat(pool.stats().requestCount()).isEqualTo(calls);
  }

  @Test
  void aCancelledCallGivesUpAndTheRunnerCarriesOn() throws Exception {
    String code = "import time\n\ndef f(x):\n    time.sleep(x)\n    return x\n";
    RunnerPool pool = start(Udfs.spec("f", List.of("BIGINT"), "BIGINT", code));
    List<FieldVector> inputs = List.of(Vectors.of(allocator, "arg1", INT64, List.of(1L)));
    long started = System.nanoTime();
    try {
      assertThatThrownBy(
              () ->
                  pool.call(
                      inputs,
                      1,
                      allocator,
                      () -> System.nanoTime() - started > TimeUnit.MILLISECONDS.toNanos(200)))
          .isInstanceOfSatisfying(
              KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.CALL_CANCELLED))
          .hasMessageContaining("cancelled");
    } finally {
      inputs.forEach(FieldVector::close);
    }
    assertThat(call(pool, List.of(INT64), List.of(0L))).containsExactly(0L);
    assertThat(launcher.started()).hasSize(1);
  }

  @Test
  void aReplacementThatCannotStartFailsTheNextCallFast() throws Exception {
    String code =
        """
        import os
        marker = os.path.join(os.path.dirname(__file__), 'started-once')
        if os.path.exists(marker):
            raise RuntimeError('refusing a second start')
        open(marker, 'w').close()

        def f(x):
            if x == 13:
                os.abort()
            return x
        """;
    RunnerPool pool = start(Udfs.spec("f", List.of("BIGINT"), "BIGINT", code));

    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(13L)))
        .hasMessageContaining("SIGABRT");
    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_LOAD_FAILED))
        .hasMessageContaining("the UDF process stopped earlier and could not be restarted")
        .hasMessageContaining("RuntimeError: refusing a second start");
    assertThat(pool.isHealthy()).isFalse();
  }

  @Test
  void statsCountRequestsRowsAndTimes() throws Exception {
    Instant[] now = {Instant.parse("2025-01-02T03:04:05Z")};
    RuntimeSpec spec = Udfs.spec("ident", List.of("BIGINT"), "BIGINT", IDENTITY);
    launcher = new HostRunnerLauncher(dir.resolve("stats"), spec);
    RunnerPool pool =
        RunnerPool.start(
            UdfSignature.of(spec),
            launcher,
            RunnerPool.Options.defaults(),
            new TimeSource(() -> now[0], System::nanoTime));
    pools.add(pool);
    assertThat(pool.stats().requestCount()).isZero();
    assertThat(pool.stats().firstRequestTime()).isNull();

    call(pool, List.of(INT64), List.of(1L, 2L));
    now[0] = now[0].plusSeconds(60);
    call(pool, List.of(INT64), List.of(3L));

    RunnerPool.Stats stats = pool.stats();
    assertThat(stats.requestCount()).isEqualTo(2);
    assertThat(stats.rows()).isEqualTo(3);
    assertThat(stats.firstRequestTime()).isEqualTo(Instant.parse("2025-01-02T03:04:05Z"));
    assertThat(stats.lastRequestTime()).isEqualTo(Instant.parse("2025-01-02T03:05:05Z"));
    assertThat(stats.runners()).isEqualTo(1);
    assertThat(stats.liveRunners()).isEqualTo(1);
    assertThat(stats.failedRequests()).isZero();
  }

  @Test
  void aBatchSentAheadToARunnerThatDiesIsComputedByItsReplacement() throws Exception {
    String code =
        "import os, time\n\ndef f(x):\n    if x == 13:\n        time.sleep(0.5)\n"
            + "        os.abort()\n    return x\n";
    RunnerPool pool = start(Udfs.spec("f", List.of("BIGINT"), "BIGINT", code));

    try (ExecutorService threads = Executors.newFixedThreadPool(2)) {
      Future<List<Object>> crashing =
          threads.submit(() -> call(pool, List.of(INT64), List.of(13L)));
      // Queued behind the crashing batch on the only runner, so sent ahead to it.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (pool.stats().requestCount() < 1 && System.nanoTime() < deadline) {
        LockSupport.parkNanos(1_000_000);
      }
      Future<List<Object>> behind = threads.submit(() -> call(pool, List.of(INT64), List.of(5L)));
      assertThatThrownBy(crashing::get).hasMessageContaining("killed by SIGABRT");
      assertThat(behind.get()).containsExactly(5L);
    }
    assertThat(launcher.started()).hasSize(2);
  }
}
