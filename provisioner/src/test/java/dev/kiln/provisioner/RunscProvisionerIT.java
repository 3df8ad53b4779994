package dev.kiln.provisioner;

import static dev.kiln.provisioner.TestImages.python;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Sandboxes in real gVisor: runsc with the ptrace platform, as root, over the Python base image.
 */
class RunscProvisionerIT {
  @TempDir static Path workRoot;

  static RunscProvisioner provisioner;
  static Path workDir;
  static SandboxImage.Layer base;

  @BeforeAll
  static void startProvisioner() throws IOException {
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

  private static Sandbox start(String name, List<String> argv) throws Exception {
    return provisioner.start(TestImages.spec(name, TestImages.image(List.of(base), argv)));
  }

  /** Runs a Python program in the sandbox to completion; returns stdout, asserts exit 0. */
  private static String run(Sandbox s, String code) throws Exception {
    SandboxProcess p = s.exec(List.of("/usr/bin/python3", "-c", code), List.of());
    p.stdin().close();
    String out = TestImages.readAll(p);
    String err = new String(p.stderr().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.exited().get(30, TimeUnit.SECONDS)).as("exit status; stderr: %s", err).isZero();
    return out;
  }

  @Test
  void startsWhenReadyAndTalksThroughPipes() throws Exception {
    try (Sandbox s = start("echo", TestImages.ECHO_INIT)) {
      assertThat(s.isRunning()).isTrue();
      assertThat(provisioner.sandboxes()).contains(s);
      assertThat(provisioner.lastStartDuration()).isPositive();

      // The readiness line was consumed: the next line on init's stdout is the echo.
      OutputStream in = s.init().stdin();
      in.write("hello sandbox\n".getBytes(StandardCharsets.UTF_8));
      in.flush();
      assertThat(RunscSandbox.readLine(s.init().stdout())).isEqualTo("HELLO SANDBOX");

      // 8 MiB through an exec'd process and back as a digest.
      byte[] payload = new byte[8 << 20];
      new Random(7).nextBytes(payload);
      SandboxProcess p =
          s.exec(
              List.of(
                  "/usr/bin/python3",
                  "-c",
                  "import sys, hashlib; d = sys.stdin.buffer.read();"
                      + " print(len(d), hashlib.sha256(d).hexdigest())"),
              List.of());
      CompletableFuture<Void> writer =
          CompletableFuture.runAsync(
              () -> {
                try (OutputStream o = p.stdin()) {
                  o.write(payload);
                } catch (IOException e) {
                  throw new java.io.UncheckedIOException(e);
                }
              });
      String out = TestImages.readAll(p).strip();
      writer.get(30, TimeUnit.SECONDS);
      assertThat(p.exited().get(30, TimeUnit.SECONDS)).isZero();
      String expected =
          HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(payload));
      assertThat(out).isEqualTo(payload.length + " " + expected);
    }
  }

  @Test
  void processesGetTheImageEnvironmentWorkingDirectoryAndUser() throws Exception {
    SandboxImage image =
        new SandboxImage(
            List.of(base),
            python("import sys\nsys.stdin.read()"),
            List.of("PATH=/usr/bin:/bin", "A=image", "B=image"),
            "/usr/lib");
    SandboxSpec spec =
        new SandboxSpec("env", image, new Limits(256L << 20, 1), List.of("B=spec", "C=spec"));
    try (Sandbox s = provisioner.start(spec)) {
      String out =
          run(
              s,
              "import os\n"
                  + "print(os.getcwd(), os.getuid(), os.getgid(), os.geteuid())\n"
                  + "for k in 'ABCD': print(k, os.environ.get(k))\n"
                  + "print(open('/proc/self/status').read().split('CapEff:')[1].split()[0])\n"
                  + "import resource; print(resource.getrlimit(resource.RLIMIT_NOFILE))\n");
      // exec's env overrides nothing here; the next call checks that it does.
      assertThat(out.lines().toList())
          .containsExactly(
              "/usr/lib 65534 65534 65534",
              "A image",
              "B spec",
              "C spec",
              "D None",
              "0000000000000000",
              "(4096, 4096)");

      SandboxProcess p =
          s.exec(
              List.of(
                  "/usr/bin/python3", "-c", "import os; print(os.environ['C'], os.environ['D'])"),
              List.of("C=exec", "D=exec"));
      assertThat(TestImages.readAll(p).strip()).isEqualTo("exec exec");
      assertThat(p.exited().get(30, TimeUnit.SECONDS)).isZero();
    }
  }

  @Test
  void upperLayersWinAndWhiteoutsDelete() throws Exception {
    Path scratch = workRoot.resolve("layers-src");
    SandboxImage.Layer one =
        new TestImages.LayerBuilder(scratch)
            .file("opt/kiln/version", "1")
            .file("opt/kiln/only-in-one", "1")
            .file("opt/kiln/dir/a", "a")
            .file("opt/kiln/dir/b", "b")
            .build("one");
    SandboxImage.Layer two =
        new TestImages.LayerBuilder(scratch)
            .file("opt/kiln/version", "2")
            .whiteout("opt/kiln/only-in-one")
            .whiteout("etc/debian_version")
            .opaque("opt/kiln/dir")
            .file("opt/kiln/dir/c", "c")
            .whiteout("usr/share/doc")
            .build("two");
    SandboxImage image =
        TestImages.image(List.of(base, one, two), python("import sys\nsys.stdin.read()"));
    try (Sandbox s = provisioner.start(TestImages.spec("layers", image))) {
      String out =
          run(
              s,
              "import os\n"
                  + "print(open('/opt/kiln/version').read())\n"
                  + "print(sorted(os.listdir('/opt/kiln')))\n"
                  + "print(sorted(os.listdir('/opt/kiln/dir')))\n"
                  + "print(os.path.exists('/etc/debian_version'),"
                  + " os.path.exists('/etc/os-release'))\n"
                  + "print(os.path.exists('/usr/share/doc'), os.path.isdir('/usr/share'))\n");
      assertThat(out.lines().toList())
          .containsExactly("2", "['dir', 'version']", "['c']", "False True", "False True");
    }
  }

  @Test
  void fortyLayersFitInOneOverlay() throws Exception {
    Path scratch = workRoot.resolve("many-src");
    List<SandboxImage.Layer> layers = new ArrayList<>();
    layers.add(base);
    for (int i = 0; i < 40; i++) {
      layers.add(
          new TestImages.LayerBuilder(scratch)
              .file("layers/" + i, Integer.toString(i))
              .file("layers/top", Integer.toString(i))
              .build("l" + i));
    }
    // Absolute layer paths would not fit in the one page the kernel takes for mount options.
    int absolute = 0;
    for (SandboxImage.Layer l : layers) {
      absolute +=
          workDir.resolve("layers").resolve(LayerStore.hex(l.digest())).toString().length() + 1;
    }
    assertThat(absolute).isGreaterThan(4096);
    SandboxImage image = TestImages.image(layers, python("import sys\nsys.stdin.read()"));
    try (Sandbox s = provisioner.start(TestImages.spec("forty", image))) {
      String out =
          run(s, "import os\nprint(len(os.listdir('/layers')), open('/layers/top').read())");
      assertThat(out.strip()).isEqualTo("41 39");
    }
  }

  @Test
  void writesStayInsideTheSandbox() throws Exception {
    SandboxImage.Layer data =
        new TestImages.LayerBuilder(workRoot.resolve("data-src"))
            .dir("data", 0755, 65534)
            .file("data/existing", "original", 0644, 65534)
            .build("data");
    SandboxImage image =
        TestImages.image(List.of(base, data), python("import sys\nsys.stdin.read()"));
    Path extracted = workDir.resolve("layers").resolve(LayerStore.hex(data.digest()));
    try (Sandbox s = provisioner.start(TestImages.spec("writer", image))) {
      String out =
          run(
              s,
              "open('/data/existing', 'w').write('changed')\n"
                  + "open('/data/new', 'w').write('new')\n"
                  + "open('/tmp/t', 'w').write('tmp')\n"
                  + "print(open('/data/existing').read(), open('/data/new').read(),"
                  + " open('/tmp/t').read())\n"
                  + "try:\n"
                  + "    open('/etc/kiln', 'w')\n"
                  + "except PermissionError:\n"
                  + "    print('no write to /etc as nobody')\n");
      assertThat(out.lines().toList())
          .containsExactly("changed new tmp", "no write to /etc as nobody");
      // The extracted layer, shared by every sandbox of the image, is untouched.
      assertThat(Files.readString(extracted.resolve("data/existing"))).isEqualTo("original");
      assertThat(extracted.resolve("data/new")).doesNotExist();

      try (Sandbox other = provisioner.start(TestImages.spec("reader", image))) {
        assertThat(
                run(
                        other,
                        "import os\n"
                            + "print(open('/data/existing').read(), os.path.exists('/data/new'))")
                    .strip())
            .isEqualTo("original False");
      }
    }
  }

  @Test
  void theNetworkIsNone() throws Exception {
    try (Sandbox s = start("net", python("import sys\nsys.stdin.read()"))) {
      String out =
          run(
              s,
              "import socket\n"
                  + "print(sorted(n for _, n in socket.if_nameindex()))\n"
                  + "try:\n"
                  + "    socket.create_connection(('192.0.2.1', 80), timeout=5)\n"
                  + "    print('connected')\n"
                  + "except OSError as e:\n"
                  + "    print('refused', e.errno)\n");
      // ENETUNREACH or EHOSTUNREACH: there is no route out, only loopback.
      assertThat(out.lines().toList()).first().isEqualTo("['lo']");
      assertThat(out.lines().toList().get(1)).isIn("refused 101", "refused 113");
    }
  }

  @Test
  void cpuQuotaLimitsTheSandboxAndSetsItsCpuCount() throws Exception {
    SandboxImage image = TestImages.image(List.of(base), python("import sys\nsys.stdin.read()"));
    SandboxSpec half = new SandboxSpec("half-cpu", image, new Limits(256L << 20, 0.5), List.of());
    try (Sandbox s = provisioner.start(half)) {
      Path cpu = hierarchyDir(s.id(), "cpu.cfs_quota_us");
      assertThat(Files.readString(cpu.resolve("cpu.cfs_quota_us")).strip()).isEqualTo("50000");
      assertThat(Files.readString(cpu.resolve("cpu.cfs_period_us")).strip()).isEqualTo("100000");
      Path acct = hierarchyDir(s.id(), "cpuacct.usage");

      // Two busy processes for 3 s of wall time get at most half a CPU between them.
      long before = Long.parseLong(Files.readString(acct.resolve("cpuacct.usage")).strip());
      long t0 = System.nanoTime();
      String out =
          run(
              s,
              "import os, time, multiprocessing\n"
                  + "def burn():\n"
                  + "    end = time.monotonic() + 3\n"
                  + "    while time.monotonic() < end: pass\n"
                  + "ps = [multiprocessing.Process(target=burn) for _ in range(2)]\n"
                  + "[p.start() for p in ps]; [p.join() for p in ps]\n"
                  + "print(os.cpu_count())\n");
      double wall = (System.nanoTime() - t0) / 1e9;
      double used =
          (Long.parseLong(Files.readString(acct.resolve("cpuacct.usage")).strip()) - before) / 1e9;
      System.out.printf(
          "cpus=0.5: %.2f s CPU in %.2f s wall (%.2f cores)%n", used, wall, used / wall);
      assertThat(used / wall).isLessThan(0.5 * 1.25);
      // The burners did run (a loaded host may give them less than their quota).
      assertThat(used).isGreaterThan(0.2);
      // runsc rounds the quota up to a CPU count of at least 2.
      assertThat(out.strip()).isEqualTo("2");
    }
    // Above 2, the count follows the quota up to the host's CPU count.
    SandboxSpec three = new SandboxSpec("three-cpu", image, new Limits(256L << 20, 3), List.of());
    try (Sandbox s = provisioner.start(three)) {
      assertThat(run(s, "import os\nprint(os.cpu_count())").strip())
          .isEqualTo(Integer.toString(Math.min(3, hostCpus())));
    }
  }

  @Test
  void aSandboxInTheBackgroundHasTheLeastCpuPriorityUntilItComesToTheForeground() throws Exception {
    SandboxImage image = TestImages.image(List.of(base), python("import sys\nsys.stdin.read()"));
    SandboxSpec spec =
        new SandboxSpec("warm", image, new Limits(256L << 20, 1), List.of()).inBackground();
    try (Sandbox s = provisioner.start(spec)) {
      Path cpu = hierarchyDir(s.id(), "cpu.shares");
      Path shares = cpu.resolve("cpu.shares");
      // Linux 5.15 and later: the cgroup is idle, so any other work takes a CPU from it at once;
      // the kernel then shows its own weight for idle groups (3) as its shares.
      boolean idleKnob = Files.exists(cpu.resolve("cpu.idle"));
      if (idleKnob) {
        assertThat(Files.readString(cpu.resolve("cpu.idle")).strip()).isEqualTo("1");
      }
      assertThat(Files.readString(shares).strip()).isEqualTo(idleKnob ? "3" : "2");
      // Its host processes (runsc's sandbox and gofer) were started at nice 19.
      List<String> pids = Files.readAllLines(cpu.resolve("cgroup.procs"));
      assertThat(pids).isNotEmpty();
      for (String pid : pids) {
        String stat = Files.readString(Path.of("/proc", pid.strip(), "stat"));
        String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        assertThat(f[16]).as("nice of host process %s", pid).isEqualTo("19");
      }
      s.toForeground();
      assertThat(Files.readString(shares).strip()).isEqualTo("1024");
      if (idleKnob) {
        assertThat(Files.readString(cpu.resolve("cpu.idle")).strip()).isEqualTo("0");
      }
    }
    try (Sandbox s =
        provisioner.start(new SandboxSpec("normal", image, new Limits(256L << 20, 1), List.of()))) {
      Path shares = hierarchyDir(s.id(), "cpu.shares").resolve("cpu.shares");
      assertThat(Files.readString(shares).strip()).isEqualTo("1024");
    }
  }

  private static int hostCpus() throws IOException {
    return (int)
        Files.readAllLines(Path.of("/proc/cpuinfo")).stream()
            .filter(l -> l.startsWith("processor"))
            .count();
  }

  private static Path hierarchyDir(String id, String file) throws IOException {
    return HostState.cgroups(id).stream()
        .filter(p -> Files.exists(p.resolve(file)))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no cgroup of " + id + " has " + file));
  }

  @Test
  void aProcessOverTheMemoryLimitTakesTheSandboxDown() throws Exception {
    SandboxImage image = TestImages.image(List.of(base), python("import sys\nsys.stdin.read()"));
    SandboxSpec spec = new SandboxSpec("memory", image, new Limits(256L << 20, 1), List.of());
    Sandbox s = provisioner.start(spec);
    try (s) {
      SandboxProcess small =
          s.exec(
              List.of("/usr/bin/python3", "-c", "b = bytearray(b'x') * (64 << 20); print(len(b))"),
              List.of());
      assertThat(TestImages.readAll(small).strip()).isEqualTo(Integer.toString(64 << 20));
      assertThat(small.exited().get(30, TimeUnit.SECONDS)).isZero();

      SandboxProcess hog =
          s.exec(
              List.of(
                  "/usr/bin/python3",
                  "-c",
                  "chunks = []\n"
                      + "for i in range(64):\n"
                      + "    chunks.append(bytearray(b'x') * (16 << 20)); print(i, flush=True)\n"),
              List.of());
      List<String> progress = TestImages.readAll(hog).lines().toList();
      int status = hog.exited().get(30, TimeUnit.SECONDS);
      int initStatus = s.init().exited().get(30, TimeUnit.SECONDS);
      s.stopped().get(30, TimeUnit.SECONDS);
      System.out.printf(
          "memory limit 256 MiB: the hog got %d x 16 MiB, exec status %d, init status %d, sandbox"
              + " running %b%n",
          progress.size(), status, initStatus, s.isRunning());
      assertThat(progress.size()).isLessThan(16);
      assertThat(status).isEqualTo(137);
      assertThat(initStatus).isEqualTo(137);
      assertThat(s.isRunning()).isFalse();
      assertThat(provisioner.sandboxes()).doesNotContain(s);
      assertThatThrownBy(() -> s.exec(List.of("/bin/true"), List.of()))
          .isInstanceOf(IOException.class)
          .hasMessageContaining("not running");
    }
    assertThat(HostState.mountsUnder(workDir.resolve("sandboxes").resolve(s.id()))).isEmpty();
  }

  @Test
  void aSandboxClosedByAThreadThatKeepsBeingInterruptedLeavesNothingMounted() throws Exception {
    // A server shutting down interrupts its pipeline threads, which may be closing a sandbox just
    // then: the stop must still delete the container and unmount its root file system.
    Sandbox s = start("interrupted", TestImages.ECHO_INIT);
    Path dir = workDir.resolve("sandboxes").resolve(s.id());
    Thread closer = Thread.ofPlatform().start(s::close);
    while (closer.isAlive()) {
      closer.interrupt();
      Thread.onSpinWait();
    }
    assertThat(s.isRunning()).isFalse();
    assertThat(HostState.mountsUnder(dir)).isEmpty();
    assertThat(dir).doesNotExist();
  }

  @Test
  void exitStatusIsTheCodeOr128PlusTheSignal() throws Exception {
    try (Sandbox s = start("signals", python("import sys\nsys.stdin.read()"))) {
      SandboxProcess abort =
          s.exec(List.of("/usr/bin/python3", "-c", "import os; os.abort()"), List.of());
      assertThat(abort.exited().get(30, TimeUnit.SECONDS)).isEqualTo(134);

      SandboxProcess seven =
          s.exec(List.of("/usr/bin/python3", "-c", "raise SystemExit(7)"), List.of());
      assertThat(seven.exited().get(30, TimeUnit.SECONDS)).isEqualTo(7);

      SandboxProcess term =
          s.exec(
              List.of(
                  "/usr/bin/python3",
                  "-c",
                  "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"),
              List.of());
      assertThat(term.exited().get(30, TimeUnit.SECONDS)).isEqualTo(143);

      SandboxProcess sleeper =
          s.exec(
              List.of(
                  "/usr/bin/python3",
                  "-c",
                  "print('up', flush=True)\nimport time\ntime.sleep(600)"),
              List.of());
      assertThat(RunscSandbox.readLine(sleeper.stdout())).isEqualTo("up");
      sleeper.kill(Duration.ofSeconds(10));
      assertThat(sleeper.isAlive()).isFalse();
      assertThat(sleeper.exited().get(30, TimeUnit.SECONDS)).isEqualTo(137);
      // Killed inside the sandbox, not just its runsc process on the host.
      assertThat(
              run(
                  s,
                  "import os\n"
                      + "print(sorted(open(f'/proc/{p}/cmdline').read().split(chr(0))[-1] for p in"
                      + " os.listdir('/proc') if p.isdigit()))"))
          .doesNotContain("time.sleep(600)");

      assertThatThrownBy(() -> s.exec(List.of("/no/such/program"), List.of()))
          .isInstanceOf(IOException.class)
          .hasMessageContaining("/no/such/program");
      assertThat(s.isRunning()).isTrue();
    }
  }

  @Test
  void theSandboxStopsWhenItsInitExits() throws Exception {
    Sandbox s = start("short", python("import sys\nsys.stdin.readline()\nraise SystemExit(3)"));
    s.init().stdin().write("bye\n".getBytes(StandardCharsets.UTF_8));
    s.init().stdin().flush();
    s.stopped().get(30, TimeUnit.SECONDS);
    assertThat(s.init().exited().get()).isEqualTo(3);
    assertThat(s.isRunning()).isFalse();
    assertThat(provisioner.sandboxes()).doesNotContain(s);
    assertThat(HostState.containers(workDir)).doesNotContain(s.id());
    assertThat(HostState.sandboxDirs(workDir)).doesNotContain(s.id());
    assertThat(HostState.cgroups(s.id())).isEmpty();
    s.close();
  }

  @Test
  void aStartThatFailsSaysWhyAndLeavesNothing() throws Exception {
    List<String> before = HostState.sandboxDirs(workDir);
    assertThatThrownBy(
            () ->
                start(
                    "broken",
                    List.of(
                        "/usr/bin/python3",
                        "-c",
                        "import sys; print('cannot import the udf', file=sys.stderr);"
                            + " sys.exit(3)")))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("failed to start")
        .hasMessageContaining("exited with status 3")
        .hasMessageContaining("cannot import the udf");
    assertThatThrownBy(() -> start("missing", List.of("/usr/bin/no-such-python")))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("/usr/bin/no-such-python");
    assertThat(HostState.sandboxDirs(workDir)).isEqualTo(before);
    assertThat(provisioner.sandboxes().stream().map(Sandbox::spec).map(SandboxSpec::name))
        .doesNotContain("broken", "missing");
    for (String id : HostState.containers(workDir)) {
      assertThat(id).doesNotContain("broken", "missing");
    }
  }

  @Test
  void aStartThatTimesOutIsStoppedAndCleanedUp(@TempDir Path dir) throws Exception {
    Path work = dir.resolve("provisioner");
    try (RunscProvisioner p =
        RunscProvisioner.builder().workDir(work).startTimeout(Duration.ofSeconds(2)).build()) {
      long t0 = System.nanoTime();
      assertThatThrownBy(
              () ->
                  p.start(
                      TestImages.spec(
                          "silent",
                          TestImages.image(
                              List.of(base),
                              List.of("/usr/bin/python3", "-c", "import time; time.sleep(600)")))))
          .isInstanceOf(IOException.class)
          .hasMessageContaining("did not print a readiness line within 2000 ms");
      assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(20));
      HostState.assertNothingLeft(work, List.of());
    }
  }

  @Test
  void closeStopsEverySandboxAndLeavesNothing(@TempDir Path dir) throws Exception {
    Path work = dir.resolve("provisioner");
    RunscProvisioner p = RunscProvisioner.builder().workDir(work).build();
    List<String> ids = new ArrayList<>();
    // One init that exits on EOF, one that ignores it and has to be killed.
    Sandbox polite =
        p.start(TestImages.spec("polite", TestImages.image(List.of(base), TestImages.ECHO_INIT)));
    Sandbox stubborn =
        p.start(
            TestImages.spec(
                "stubborn",
                TestImages.image(List.of(base), python("import time\ntime.sleep(600)"))));
    ids.add(polite.id());
    ids.add(stubborn.id());
    SandboxProcess running =
        stubborn.exec(List.of("/usr/bin/python3", "-c", "import time; time.sleep(600)"), List.of());
    assertThat(HostState.containers(work)).containsExactlyInAnyOrderElementsOf(ids);
    assertThat(HostState.mountsUnder(work)).hasSize(2);

    p.close();
    p.close();
    assertThat(polite.stopped()).isDone();
    assertThat(stubborn.stopped()).isDone();
    assertThat(running.exited().get(30, TimeUnit.SECONDS)).isEqualTo(137);
    assertThat(p.sandboxes()).isEmpty();
    HostState.assertNothingLeft(work, ids);
    assertThatThrownBy(
            () ->
                p.start(
                    TestImages.spec("late", TestImages.image(List.of(base), TestImages.ECHO_INIT))))
        .isInstanceOf(IllegalStateException.class);
  }

  @Test
  void aWorkDirectoryHasOneProvisionerAtATime() {
    assertThatThrownBy(() -> RunscProvisioner.builder().workDir(workDir).build())
        .isInstanceOf(IOException.class)
        .hasMessageContaining("in use by another provisioner");
  }
}
