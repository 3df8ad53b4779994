package dev.kiln.worker;

import dev.kiln.definition.RuntimeSpec;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * For worker ITs that run real runners as host processes ({@code @RegisterExtension}): an allocator
 * that fails the test on a leaked buffer, and runner pools, each UDF in its own directory, closed
 * after each test.
 */
final class HostRunnerPools implements BeforeEachCallback, AfterEachCallback {
  private final List<RunnerPool> pools = new ArrayList<>();
  private final AtomicInteger dirs = new AtomicInteger();
  private BufferAllocator allocator;
  private Path dir;

  @Override
  public void beforeEach(ExtensionContext context) throws IOException {
    allocator = new RootAllocator();
    dir = Files.createTempDirectory("kiln-runners-");
  }

  @Override
  public void afterEach(ExtensionContext context) throws IOException {
    pools.forEach(RunnerPool::close);
    pools.clear();
    allocator.close(); // fails the test on a leaked buffer
    try (Stream<Path> walk = Files.walk(dir)) {
      for (Path p : walk.sorted(Comparator.reverseOrder()).toList()) {
        Files.deleteIfExists(p);
      }
    }
  }

  BufferAllocator allocator() {
    return allocator;
  }

  /** A pool of the UDF's runners with the default options, closed after the test. */
  RunnerPool start(RuntimeSpec spec) throws Exception {
    return start(spec, RunnerPool.Options.defaults());
  }

  /** A pool of the UDF's runners, closed after the test. */
  RunnerPool start(RuntimeSpec spec, RunnerPool.Options options) throws Exception {
    HostRunnerLauncher launcher =
        new HostRunnerLauncher(dir.resolve("udf" + dirs.incrementAndGet()), spec);
    return closedAfter(RunnerPool.start(UdfSignature.of(spec), launcher, options));
  }

  /** Closes {@code pool} after the test. */
  RunnerPool closedAfter(RunnerPool pool) {
    pools.add(pool);
    return pool;
  }
}
