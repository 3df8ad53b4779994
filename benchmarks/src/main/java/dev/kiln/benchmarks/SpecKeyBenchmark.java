package dev.kiln.benchmarks;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.ContentKeys;
import dev.kiln.definition.HandlerCheck;
import dev.kiln.definition.ImportRef;
import dev.kiln.definition.RuntimeSpec;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The CPU part of the ApplyUdfResource hot path: parse and validate the spec, check the handler,
 * compute the content key. {@code codeLines} varies the size of the UDF body.
 *
 * <p>Run: {@code bin/bench jmh SpecKeyBenchmark}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(1)
public class SpecKeyBenchmark {
  @Param({"3", "300"})
  int codeLines;

  String spec;

  @Setup
  public void setUp() {
    StringBuilder code = new StringBuilder("def f(x):\n    return x + 1\n");
    for (int i = 0; i < codeLines; i++) {
      code.append("# padding line ").append(i).append(" of a longer UDF body\n");
    }
    spec = ColdStartBenchmark.spec("f", code.toString());
  }

  @Benchmark
  public ContentKey parseValidateAndKey() throws KilnException {
    RuntimeSpec s = RuntimeSpec.parse(spec);
    HandlerCheck.requireDefined(s.code(), s.handler());
    return ContentKeys.compute(
        s, List.of(new ImportRef("@s/a.py", "etag")), "sha256:base", "runner", "");
  }
}
