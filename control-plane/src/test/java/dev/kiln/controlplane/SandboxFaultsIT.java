package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.List;
import org.apache.arrow.flight.FlightRuntimeException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * A hostile UDF fails its own call and its sandbox lives, through the whole path as Databend calls
 * it (one runner, the default 512 MiB sandbox): a fork bomb gets EAGAIN, filling /tmp gets ENOSPC,
 * a 3 GiB allocation hits the runner's memory limit. After each, a correct call on the same
 * endpoint with the same headers works, in the same sandbox (a mark it left in /tmp is still
 * there).
 */
class SandboxFaultsIT {
  static final String TENANT = "acme";
  static final List<String> TYPES = List.of("VARCHAR NULL", "BIGINT NULL");

  static final String CODE =
      """
      import os

      def fork_until_refused():
          r, w = os.pipe()
          kids = []
          try:
              while True:
                  pid = os.fork()
                  if pid == 0:
                      os.close(w); os.read(r, 1); os._exit(0)
                  kids.append(pid)
          finally:
              os.close(w); os.close(r)
              for k in kids:
                  os.waitpid(k, 0)

      def fill(path):
          try:
              with open(path, 'wb') as f:
                  while True:
                      f.write(b'x' * (1 << 20)); f.flush()
          finally:
              os.unlink(path)

      def faults(kind, x):
          if kind == 'mark':
              if not os.path.exists('/tmp/mark'):
                  with open('/tmp/mark', 'w') as f:
                      f.write(str(int.from_bytes(os.urandom(6), 'big')))
              with open('/tmp/mark') as f:
                  return int(f.read())
          if kind == 'fork':
              try:
                  fork_until_refused()
              except BlockingIOError as e:
                  return e.errno
          if kind == 'fork-raise':
              fork_until_refused()
          if kind == 'tmp':
              fill('/tmp/big')
          if kind == 'var-tmp':
              fill('/var/tmp/big')
          if kind == 'memory':
              hoard = bytearray(3 << 30)
          if kind == 'full-then-grow':
              for d in ['/tmp', '/dev/shm', '/var/tmp', '/run/lock']:
                  try:
                      fill_and_keep(d + '/keep')
                  except OSError:
                      pass
              chunks = []
              while True:
                  chunks.append(bytearray(b'x') * (16 << 20))
          if kind == 'clean':
              for d in ['/tmp', '/dev/shm', '/var/tmp', '/run/lock']:
                  os.unlink(d + '/keep')
          return x + 1

      def fill_and_keep(path):
          with open(path, 'wb') as f:
              while True:
                  f.write(b'x' * (1 << 20)); f.flush()
      """;

  @TempDir static Path dataDir;
  static RunningKiln kiln;
  static DatabendClient.Resource udf;
  static long mark;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void startKiln() throws Exception {
    kiln = RunningKiln.start(dataDir);
    udf = kiln.api().apply(TENANT, spec("faults", TYPES, "BIGINT NULL", CODE));
  }

  @AfterAll
  static void stopKiln() throws Exception {
    if (kiln != null) {
      kiln.close();
    }
  }

  private long call(String kind, long x) throws Exception {
    List<List<Object>> out =
        KilnTestSupport.call(
            allocator, udf, TENANT, "faults", TYPES, "[[\"" + kind + "\"," + x + "]]");
    return ((Number) out.get(0).get(0)).longValue();
  }

  /** The sandbox's mark, made by the first call that asks. */
  private synchronized long mark() throws Exception {
    if (mark == 0) {
      mark = call("mark", 0);
    }
    return mark;
  }

  /** A correct call works, in the sandbox that was there before. */
  private void assertTheNextCallWorks(String after, long markBefore) throws Exception {
    assertThat(call("ok", 41)).as("the next call after " + after).isEqualTo(42L);
    assertThat(call("mark", 0)).as("the sandbox's mark after " + after).isEqualTo(markBefore);
  }

  /** Asserts that the call fails and returns the text Databend would show. */
  private String failure(String kind) {
    String[] text = new String[1];
    assertThatThrownBy(() -> call(kind, 1))
        .as(kind)
        .isInstanceOfSatisfying(
            FlightRuntimeException.class, e -> text[0] = e.status().description());
    System.out.println(kind + " fails with: " + text[0]);
    return text[0];
  }

  @Test
  void aForkBombGetsEagainInsideTheUdf() throws Exception {
    long before = mark();
    assertThat(call("fork", 1)).as("errno of the fork the sandbox refused").isEqualTo(11L);
    assertTheNextCallWorks("fork", before);
    assertThat(failure("fork-raise"))
        .contains("BlockingIOError: [Errno 11] Resource temporarily unavailable")
        .contains("(udf.py line 8, in fork_until_refused: pid = os.fork())");
    assertTheNextCallWorks("fork-raise", before);
  }

  /**
   * Children a runner never waited for are left to the sandbox's init when the runner dies; init
   * reaps them, so their process slots come back and a new runner can start. In a sandbox of its
   * own (another UDF), so the other cases here never meet its children.
   */
  @Test
  void aRunnerThatDiesLeavingItsChildrenIsReplacedEachTime() throws Exception {
    String code =
        """
        import os

        def orphans(kind):
            if kind == 'orphans':
                for _ in range(64):
                    try:
                        if os.fork() == 0:
                            os._exit(0)
                    except BlockingIOError:
                        break
                os._exit(7)
            return 1
        """;
    DatabendClient.Resource own =
        kiln.api().apply(TENANT, spec("orphans", List.of("VARCHAR NULL"), "BIGINT NULL", code));
    for (int i = 0; i < 3; i++) {
      assertThatThrownBy(
              () ->
                  KilnTestSupport.call(
                      allocator,
                      own,
                      TENANT,
                      "orphans",
                      List.of("VARCHAR NULL"),
                      "[[\"orphans\"]]"))
          .isInstanceOf(FlightRuntimeException.class)
          .hasMessageContaining("(exited with status 7)");
      assertThat(
              KilnTestSupport.call(
                      allocator, own, TENANT, "orphans", List.of("VARCHAR NULL"), "[[\"ok\"]]")
                  .get(0)
                  .get(0))
          .as("a new runner after the children were left behind, round " + i)
          .isEqualTo(1L);
    }
  }

  @Test
  void fillingTmpGetsEnospcInsideTheUdf() throws Exception {
    long before = mark();
    // The write fails, or the close that flushes what the write left (the line of the with).
    assertThat(failure("tmp"))
        .contains("OSError: [Errno 28] No space left on device (udf.py line ")
        .contains(", in fill: ");
    assertTheNextCallWorks("tmp", before);
    assertThat(failure("var-tmp"))
        .contains("OSError: [Errno 28] No space left on device (udf.py line ")
        .contains(", in fill: ");
    assertTheNextCallWorks("var-tmp", before);
  }

  @Test
  void aThreeGibAllocationFailsOnlyItsRunner() throws Exception {
    long before = mark();
    long perRunnerMiB = dev.kiln.worker.RunnerPool.Options.memoryPerRunner(512L << 20, 1) >> 20;
    assertThat(failure("memory"))
        .contains(
            "the UDF process was killed: memory limit "
                + perRunnerMiB
                + " MiB exceeded (MemoryError in udf.py line");
    assertTheNextCallWorks("memory", before);
  }

  /**
   * The scratch space is memory-backed and comes on top of the runners' memory: a UDF that fills
   * all of it and then grows to its runner's limit, written page by page, fails its runner only.
   */
  @Test
  void aFullScratchSpaceAndAFullRunnerStillFitTheSandbox() throws Exception {
    long before = mark();
    long perRunnerMiB = dev.kiln.worker.RunnerPool.Options.memoryPerRunner(512L << 20, 1) >> 20;
    assertThat(failure("full-then-grow"))
        .contains(
            "the UDF process was killed: memory limit "
                + perRunnerMiB
                + " MiB exceeded (MemoryError in udf.py line");
    assertTheNextCallWorks("full-then-grow", before);
    assertThat(call("clean", 1)).isEqualTo(2L);
    assertTheNextCallWorks("clean", before);
  }
}
