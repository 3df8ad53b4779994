package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.RuntimeSpec;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Code written for the databend-udf package, unchanged, through real Python runners: Kiln's {@code
 * databend_udf} module and the options of its {@code @udf} decorator.
 */
class RunnerOptionsIT {

  static final ArrowType INT64 = new ArrowType.Int(64, true);

  @TempDir Path dir;
  private BufferAllocator allocator;
  private final List<RunnerPool> pools = new ArrayList<>();
  private final AtomicInteger dirs = new AtomicInteger();

  @BeforeEach
  void setUp() {
    allocator = new RootAllocator();
  }

  @AfterEach
  void tearDown() {
    pools.forEach(RunnerPool::close);
    allocator.close();
  }

  private RunnerPool start(RuntimeSpec spec) throws Exception {
    HostRunnerLauncher launcher =
        new HostRunnerLauncher(dir.resolve("udf" + dirs.incrementAndGet()), spec);
    RunnerPool pool =
        RunnerPool.start(UdfSignature.of(spec), launcher, RunnerPool.Options.defaults());
    pools.add(pool);
    return pool;
  }

  private ResultDecoder.Result callResult(
      RunnerPool pool, List<ArrowType> types, List<?>... columns) throws Exception {
    List<FieldVector> inputs = new ArrayList<>();
    try {
      for (int i = 0; i < columns.length; i++) {
        inputs.add(Vectors.of(allocator, "arg" + (i + 1), types.get(i), columns[i]));
      }
      return pool.call(inputs, columns[0].size(), allocator, () -> false);
    } finally {
      inputs.forEach(FieldVector::close);
    }
  }

  private List<Object> call(RunnerPool pool, List<ArrowType> types, List<?>... columns)
      throws Exception {
    try (FieldVector out = callResult(pool, types, columns).vector()) {
      return Vectors.values(out);
    }
  }

  @Test
  void codeForDatabendUdfRunsUnchanged() throws Exception {
    String code =
        """
        from databend_udf import udf, UDFServer

        @udf(input_types=["BIGINT", "BIGINT"], result_type="BIGINT")
        def gcd(x: int, y: int) -> int:
            while y != 0:
                (x, y) = (y, x % y)
            return x

        assert gcd(12, 18) == 6  # still a plain callable

        if __name__ == '__main__':
            server = UDFServer("0.0.0.0:8815")
            server.add_function(gcd)
            server.serve()
        """;
    RunnerPool pool =
        start(Udfs.spec("gcd", List.of("BIGINT NULL", "BIGINT NULL"), "BIGINT NULL", code));

    assertThat(call(pool, List.of(INT64, INT64), List.of(12L, 7L), List.of(18L, 21L)))
        .containsExactly(6L, 7L);
  }

  @Test
  void skipNullReturnsNullWithoutCallingTheFunction() throws Exception {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["INT", "INT"], result_type="INT", skip_null=True)
        def add(a, b):
            assert a is not None and b is not None, 'called with a NULL'
            return a + b
        """;
    RunnerPool pool = start(Udfs.spec("add", List.of("INT", "INT"), "INT", code));
    ArrowType int32 = new ArrowType.Int(32, true);

    assertThat(
            call(
                pool,
                List.of(int32, int32),
                Arrays.asList(1L, null, 3L, null),
                Arrays.asList(10L, 20L, null, null)))
        .containsExactly(11L, null, null, null);
  }

  @Test
  void batchModeGetsWholeColumns() throws Exception {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["BIGINT"], result_type="VARCHAR", batch_mode=True)
        def describe(xs):
            assert isinstance(xs, list)
            return ['%d of %d: %s' % (i, len(xs), x) for i, x in enumerate(xs)]
        """;
    RunnerPool pool = start(Udfs.spec("describe", List.of("BIGINT"), "VARCHAR", code));

    assertThat(call(pool, List.of(INT64), Arrays.asList(5L, null, 7L)))
        .containsExactly("0 of 3: 5", "1 of 3: None", "2 of 3: 7");
  }

  @Test
  void batchModeMustReturnOneValuePerRow() throws Exception {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["BIGINT"], result_type="BIGINT", batch_mode=True)
        def short(xs):
            return xs[:1]
        """;
    RunnerPool pool = start(Udfs.spec("short", List.of("BIGINT"), "BIGINT", code));

    assertThatThrownBy(() -> call(pool, List.of(INT64), List.of(1L, 2L)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_RAISED))
        .hasMessageContaining("it got 2 rows and returned 1 values");
  }

  @Test
  void ioThreadsRunRowsConcurrentlyInOrder() throws Exception {
    String code =
        """
        import threading, time
        from databend_udf import udf

        lock = threading.Lock()
        active = [0, 0]  # running now, most at once

        @udf(input_types=["BIGINT"], result_type="VARCHAR", io_threads=8)
        def slow(x):
            with lock:
                active[0] += 1
                active[1] = max(active)
            time.sleep(0.2)
            with lock:
                active[0] -= 1
            return '%d %d' % (x, active[1])
        """;
    RunnerPool pool = start(Udfs.spec("slow", List.of("BIGINT"), "VARCHAR", code));
    List<Long> in = List.of(0L, 1L, 2L, 3L, 4L, 5L, 6L, 7L);

    List<Object> out = call(pool, List.of(INT64), in);

    int mostAtOnce = 0;
    for (int i = 0; i < in.size(); i++) {
      String[] parts = ((String) out.get(i)).split(" ");
      assertThat(parts[0]).as("row order").isEqualTo(Long.toString(in.get(i)));
      mostAtOnce = Math.max(mostAtOnce, Integer.parseInt(parts[1]));
    }
    assertThat(mostAtOnce).as("rows computed at the same time").isGreaterThan(1);
  }

  @Test
  void onErrorNullTurnsFailingRowsIntoNullsAndCountsThem() throws Exception {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["BIGINT"], result_type="BIGINT", on_error="null")
        def inverse(x):
            if x == 5:
                return 'not a number'
            return 100 // x
        """;
    RunnerPool pool = start(Udfs.spec("inverse", List.of("BIGINT"), "BIGINT", code));

    ResultDecoder.Result result =
        callResult(pool, List.of(INT64), Arrays.asList(1L, 0L, 4L, 0L, 5L, 50L));
    try (FieldVector out = result.vector()) {
      assertThat(Vectors.values(out)).containsExactly(100L, null, 25L, null, null, 2L);
    }
    assertThat(result.rowErrors()).isEqualTo(3);
    assertThat(pool.stats().rowErrors()).isEqualTo(3);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (pool.recentOutput().size() < 3 && System.nanoTime() < deadline) {
      LockSupport.parkNanos(1_000_000);
    }
    assertThat(String.join("\n", pool.recentOutput()))
        .contains("row 1 failed and was returned as NULL (on_error='null'): ZeroDivisionError")
        .contains("udf.py line 7, in inverse")
        .contains("row 4 failed")
        .contains("returned str 'not a number' for row 4");
  }

  @Test
  void onErrorNullAlsoWorksWithSkipNullAndManyFailures() throws Exception {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["BIGINT"], result_type="BIGINT", on_error="null", skip_null=True)
        def odd_only(x):
            if x % 2 == 0:
                raise ValueError('even')
            return x
        """;
    RunnerPool pool = start(Udfs.spec("odd_only", List.of("BIGINT"), "BIGINT", code));
    List<Long> in = new ArrayList<>();
    List<Object> expected = new ArrayList<>();
    for (long i = 0; i < 10_000; i++) {
      in.add(i % 3 == 0 ? null : i);
      expected.add(i % 3 == 0 || i % 2 == 0 ? null : i);
    }

    ResultDecoder.Result result = callResult(pool, List.of(INT64), in);
    try (FieldVector out = result.vector()) {
      assertThat(Vectors.values(out)).isEqualTo(expected);
    }
    long failed = in.stream().filter(x -> x != null && x % 2 == 0).count();
    assertThat(result.rowErrors()).isEqualTo((int) failed);
  }

  @Test
  void decoratorTypesMustAgreeWithTheSqlSignature() {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["VARCHAR"], result_type="INT")
        def f(x):
            return 1
        """;
    assertThatThrownBy(() -> start(Udfs.spec("f", List.of("INT"), "INT", code)))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.UDF_LOAD_FAILED))
        .hasMessageContaining("the @udf decorator of f declares input_types=[VARCHAR]")
        .hasMessageContaining("the SQL function takes [INT32 NULL]");
  }

  @Test
  void optionsThatCannotWorkAreLoadErrors() {
    assertThatThrownBy(
            () ->
                start(
                    Udfs.spec(
                        "f",
                        List.of("INT"),
                        "INT NOT NULL",
                        "from databend_udf import udf\n"
                            + "@udf(input_types=['INT'], result_type='INT NOT NULL',"
                            + " skip_null=True)\ndef f(x):\n    return x\n")))
        .hasMessageContaining("skip_null=True needs a nullable result");
    assertThatThrownBy(
            () ->
                start(
                    Udfs.spec(
                        "f",
                        List.of("INT"),
                        "INT",
                        "from databend_udf import udf\n"
                            + "@udf(input_types=['INT'], result_type='INT', on_error='ignore')\n"
                            + "def f(x):\n    return x\n")))
        .hasMessageContaining("ValueError: on_error must be 'raise' or 'null', got 'ignore'");
    assertThatThrownBy(
            () ->
                start(
                    Udfs.spec(
                        "f",
                        List.of("INT"),
                        "INT",
                        "from databend_udf import udf, UDFServer\n"
                            + "@udf(input_types=['INT'], result_type='INT')\n"
                            + "def f(x):\n    return x\n"
                            + "UDFServer().serve()\n")))
        .hasMessageContaining("under Kiln the worker serves the UDF");
  }

  @Test
  void aHandlerMayNameTheFunctionByItsDecoratorName() throws Exception {
    String code =
        """
        from databend_udf import udf

        @udf(input_types=["BIGINT"], result_type="BIGINT", name="plus_one")
        def implementation(x):
            return x + 1
        """;
    RunnerPool pool = start(Udfs.spec("plus_one", List.of("BIGINT"), "BIGINT", code));

    assertThat(call(pool, List.of(INT64), List.of(1L))).containsExactly(2L);
  }
}
