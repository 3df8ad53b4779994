package dev.kiln.provisioner;

import static dev.kiln.provisioner.TestImages.python;
import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A hostile process inside a real gVisor sandbox fails on its own and the sandbox lives: a fork
 * bomb gets EAGAIN at the process limit, filling a scratch directory gets ENOSPC at its size, and
 * an allocation beyond the process's own memory limit fails only that process. Each case ends with
 * the sandbox running and a new process working in it.
 */
class SandboxFaultsIT {
  /** 512 MiB: 128 MiB of scratch space (/tmp 64 MiB) and 32 tasks. */
  static final Limits LIMITS = new Limits(512L << 20, 1);

  @TempDir static Path workRoot;

  static RunscProvisioner provisioner;
  static Path workDir;
  static SandboxImage.Layer base;

  @BeforeAll
  static void startProvisioner() throws Exception {
    base = TestImages.baseLayer();
    workDir = workRoot.resolve("provisioner");
    provisioner = RunscProvisioner.builder().workDir(workDir).build();
  }

  @AfterAll
  static void closeProvisioner() throws Exception {
    List<String> ids = provisioner.sandboxes().stream().map(Sandbox::id).toList();
    provisioner.close();
    HostState.assertNothingLeft(workDir, ids);
  }

  private static Sandbox start(String name, String initCode) throws Exception {
    SandboxImage image = TestImages.image(List.of(base), python(initCode));
    return provisioner.start(new SandboxSpec(name, image, LIMITS, List.of()));
  }

  /** What a Python program printed and its exit status. */
  record Run(String out, String err, int status) {}

  private static Run run(Sandbox s, String code, String... args) throws Exception {
    List<String> argv =
        java.util.stream.Stream.concat(
                java.util.stream.Stream.of("/usr/bin/python3", "-c", code),
                java.util.stream.Stream.of(args))
            .toList();
    SandboxProcess p = s.exec(argv, List.of());
    p.stdin().close();
    String out = TestImages.readAll(p);
    String err = new String(p.stderr().readAllBytes(), StandardCharsets.UTF_8);
    return new Run(out.strip(), err.strip(), p.exited().get(120, TimeUnit.SECONDS));
  }

  /** The sandbox is running and starts a new process that answers. */
  private static void assertAlive(Sandbox s) throws Exception {
    assertThat(s.isRunning()).isTrue();
    assertThat(provisioner.sandboxes()).contains(s);
    assertThat(run(s, "print(6 * 7)")).isEqualTo(new Run("42", "", 0));
  }

  /**
   * Every process forks until fork fails; the first one reports the error. Then each waits on a
   * pipe until all have stopped forking, reaps its own children and exits, so when the first one
   * has reaped its children the whole tree is gone.
   */
  static final String FORK_BOMB =
      """
      import os
      root = os.getpid()
      r, w = os.pipe()
      error = None
      try:
          while True:
              os.fork()
      except OSError as e:
          error = e
      os.close(w)
      os.read(r, 1)
      while True:
          try:
              os.wait()
          except ChildProcessError:
              break
      if os.getpid() != root:
          os._exit(0)
      print(type(error).__name__, error.errno, flush=True)
      """;

  @Test
  void aForkBombGetsEagainAndTheSandboxLives() throws Exception {
    try (Sandbox s = start("fork-bomb", "import sys\nsys.stdin.read()")) {
      Run bomb = run(s, FORK_BOMB);
      assertThat(bomb).isEqualTo(new Run("BlockingIOError 11", "", 0));
      assertAlive(s);
      // The slots were given back, and the limit holds for the next bomb too.
      assertThat(run(s, FORK_BOMB)).isEqualTo(new Run("BlockingIOError 11", "", 0));
      assertAlive(s);
    }
  }

  /**
   * How a UDF in a runner forks: one process forks children until it cannot, then lets them go and
   * waits for them. That works with any init, as nothing is left to reap.
   */
  @Test
  void oneProcessForkingUntilItCannotCountsThreadsAndChildrenAlike() throws Exception {
    try (Sandbox s = start("forker", "import sys\nsys.stdin.read()")) {
      Run forks =
          run(
              s,
              """
              import os, threading
              r, w = os.pipe()
              kids = []
              try:
                  while True:
                      pid = os.fork()
                      if pid == 0:
                          os.close(w); os.read(r, 1); os._exit(0)
                      kids.append(pid)
              except BlockingIOError as e:
                  print('fork', e.errno, len(kids), flush=True)
              try:
                  threading.Thread(target=lambda: None).start()
              except RuntimeError as e:
                  print('thread', e, flush=True)
              os.close(w)
              for k in kids:
                  os.waitpid(k, 0)
              """);
      // The init and this process are the other two tasks of the sandbox's 32.
      assertThat(forks.status()).as("stderr: %s", forks.err()).isZero();
      assertThat(forks.out().lines().toList())
          .containsExactly(
              "fork 11 " + (LIMITS.maxProcesses() - 2), "thread can't start new thread");
      assertAlive(s);
    }
  }

  /** Writes 1 MiB at a time to each file until a write fails; prints MiB written and the errno. */
  static final String FILL =
      """
      import os, sys
      for path in sys.argv[1:]:
          n = 0
          try:
              with open(path, 'wb') as f:
                  while n < 4096:
                      f.write(b'x' * (1 << 20)); f.flush(); n += 1
              print(path, n, 'no error', flush=True)
          except OSError as e:
              print(path, n, type(e).__name__, e.errno, flush=True)
      """;

  @Test
  void fillingTmpGetsEnospcAndTheSandboxLives() throws Exception {
    try (Sandbox s = start("fill-tmp", "import sys\nsys.stdin.read()")) {
      Run fill = run(s, FILL, "/tmp/big");
      long tmpMiB = LIMITS.writableBytes() / 2 >> 20;
      assertThat(fill.out()).isEqualTo("/tmp/big " + tmpMiB + " OSError 28");
      assertAlive(s);
      // Full until the file goes; then the space is there again.
      assertThat(run(s, FILL, "/tmp/more").out()).isEqualTo("/tmp/more 0 OSError 28");
      assertThat(run(s, "import os\nos.unlink('/tmp/big')\n" + FILL, "/tmp/again").out())
          .isEqualTo("/tmp/again " + tmpMiB + " OSError 28");
      assertAlive(s);
    }
  }

  @Test
  void everyOtherWritablePlaceIsBoundedOrClosed() throws Exception {
    try (Sandbox s = start("fill-elsewhere", "import sys\nsys.stdin.read()")) {
      long w = LIMITS.writableBytes() >> 20;
      Run fill = run(s, FILL, "/var/tmp/big", "/dev/shm/big", "/run/lock/big");
      assertThat(fill.out().lines().toList())
          .containsExactly(
              "/var/tmp/big " + w / 8 + " OSError 28",
              "/dev/shm/big " + w / 4 + " OSError 28",
              "/run/lock/big " + w / 8 + " OSError 28");
      // The rest of the root file system is not the sandbox user's to write.
      Run elsewhere = run(s, FILL, "/app", "/root/big", "/usr/big", "/big");
      assertThat(elsewhere.out().lines().toList())
          .containsExactly(
              "/app 0 PermissionError 13",
              "/root/big 0 PermissionError 13",
              "/usr/big 0 PermissionError 13",
              "/big 0 PermissionError 13");
      Run sizes =
          run(
              s,
              """
              import os
              for d in ['/tmp', '/var/tmp', '/dev/shm', '/run/lock']:
                  st = os.statvfs(d)
                  print(d, st.f_blocks * st.f_frsize >> 20)
              """);
      assertThat(sizes.out().lines().toList())
          .containsExactly(
              "/tmp " + w / 2, "/var/tmp " + w / 8, "/dev/shm " + w / 4, "/run/lock " + w / 8);
      assertAlive(s);
    }
  }

  /**
   * A process that caps its own address space (as Kiln's runner does with {@code
   * KILN_MEMORY_LIMIT}) and then asks for 3 GiB, six times the sandbox's memory, fails alone.
   */
  @Test
  void aLargeAllocationOverTheMemoryLimitFailsOnlyThatProcess() throws Exception {
    try (Sandbox s = start("allocate", "import sys\nsys.stdin.read()")) {
      String limit =
          "import resource\n"
              + "limit = %d\n".formatted(RUNNER_MEMORY)
              + "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n";
      Run hog =
          run(
              s,
              limit
                  + """
                  try:
                      hoard = bytearray(3 << 30)
                  except MemoryError:
                      print('MemoryError', flush=True)
                      raise
                  """);
      assertThat(hog.out()).isEqualTo("MemoryError");
      assertThat(hog.err()).endsWith("MemoryError");
      assertThat(hog.status()).isEqualTo(1);
      assertAlive(s);

      // Growing to the limit 16 MiB at a time, each chunk written, fails the same way.
      Run grower =
          run(
              s,
              limit
                  + """
                  chunks = []
                  try:
                      while True:
                          chunks.append(bytearray(b'x') * (16 << 20))
                  except MemoryError:
                      print('MemoryError after', len(chunks), flush=True)
                  """);
      assertThat(grower.out()).startsWith("MemoryError after ");
      assertThat(grower.status()).isZero();
      assertAlive(s);
    }
  }

  /** A runner's share of this sandbox's memory with one runner, as the worker computes it. */
  static final long RUNNER_MEMORY = (512L << 20) - (64L << 20);
}
