package dev.kiln.provisioner;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalLong;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One gVisor sandbox run by a foreground {@code runsc run}, whose init owns the host pipes: when
 * the JVM dies the init sees EOF on stdin and the sandbox ends by itself.
 *
 * <p>Lifecycle: {@link #awaitReady} consumes the readiness line; {@link #stop} (from {@link
 * #close}, from the init exiting on its own, or from a failed start) runs once, on whichever thread
 * gets there first, and every later caller waits for it. Stopping closes init's stdin, waits a
 * grace period, kills and deletes the container, then unmounts and removes the sandbox directory;
 * {@link #stopped} completes after all of that.
 */
final class RunscSandbox implements Sandbox {
  private static final Logger log = LoggerFactory.getLogger(RunscSandbox.class);
  private static final Duration KILL_WAIT = Duration.ofSeconds(5);
  private static final int MAX_READY_LINE = 64 << 10;
  static final String EXEC_DIR = "exec";

  private final String id;
  private final SandboxSpec spec;
  private final Path dir;
  private final Path rootfs;
  private final RunscProvisioner owner;
  private final Runsc runsc;
  private final Process initHost;
  private final RunscProcess init;
  private final Set<RunscProcess> execs = ConcurrentHashMap.newKeySet();
  private final AtomicInteger execCount = new AtomicInteger();
  private final AtomicBoolean stopStarted = new AtomicBoolean();
  private final CompletableFuture<Void> stopped = new CompletableFuture<>();
  private final long startedNanos = System.nanoTime();
  private volatile boolean ready;
  // Taken into the foreground (see toForeground): processes started from now on are not niced.
  private volatile boolean foreground;
  private final Object priority = new Object();
  // Guarded by priority: where runsc makes this sandbox's cgroups (found once, on first use), and
  // whether they were made idle.
  private List<Path> cgroups;
  private boolean idle;

  RunscSandbox(
      String id,
      SandboxSpec spec,
      Path dir,
      Path rootfs,
      RunscProvisioner owner,
      Process initHost) {
    this.id = id;
    this.spec = spec;
    this.dir = dir;
    this.rootfs = rootfs;
    this.owner = owner;
    this.runsc = owner.runsc().on(spec.network());
    this.initHost = initHost;
    CompletableFuture<Integer> initExited = initHost.onExit().thenApply(Process::exitValue);
    this.init =
        new RunscProcess(
            "init of sandbox " + id,
            initHost,
            initHost.getInputStream(),
            initExited,
            () -> runsc.kill(id));
    // The JDK completes onExit on its process reaper thread: do the slow cleanup elsewhere.
    initHost
        .onExit()
        .thenRun(() -> Thread.ofVirtual().start(() -> stop("its init process exited", false)));
  }

  @Override
  public String id() {
    return id;
  }

  @Override
  public SandboxSpec spec() {
    return spec;
  }

  @Override
  public SandboxProcess init() {
    return init;
  }

  boolean isReady() {
    return ready;
  }

  /**
   * Waits for init's readiness line (and consumes it) until {@code timeout}; on failure stops the
   * sandbox and throws with what runsc and init wrote to stderr.
   */
  void awaitReady(Duration timeout) throws IOException, InterruptedException {
    CompletableFuture<String> line = new CompletableFuture<>();
    InputStream out = initHost.getInputStream();
    Thread.ofVirtual()
        .name("kiln-ready-" + id)
        .start(
            () -> {
              try {
                line.complete(readLine(out));
              } catch (Throwable t) {
                line.completeExceptionally(t);
              }
            });
    String failure;
    try {
      if (spec.background()) {
        awaitIdleCgroup(line, timeout);
      }
      line.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
      ready = true;
      if (spec.background()) {
        toIdleCpuPriority();
      }
      return;
    } catch (TimeoutException e) {
      failure =
          "its init process did not print a readiness line within "
              + timeout.toMillis()
              + " ms (the image's entrypoint must write one line to stdout when it is ready)";
    } catch (ExecutionException e) {
      failure = describeEarlyExit(e.getCause());
    } catch (InterruptedException e) {
      stop("its start was interrupted", false);
      throw e;
    }
    stop("it failed to start", false);
    String stderr = drainStderr();
    throw new IOException(
        "sandbox "
            + id
            + " ("
            + spec.name()
            + ") failed to start: "
            + failure
            + (stderr.isEmpty() ? "" : "; stderr of runsc and init: " + stderr));
  }

  private String describeEarlyExit(Throwable cause) {
    if (owner.isClosed()) {
      return "the provisioner was closed while it was starting";
    }
    if (cause instanceof EOFException) {
      try {
        if (initHost.waitFor(KILL_WAIT.toMillis(), TimeUnit.MILLISECONDS)) {
          return "its init process exited with status "
              + initHost.exitValue()
              + " before it printed its readiness line";
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      return "its init process closed stdout before it printed its readiness line";
    }
    return "reading its readiness line failed: " + cause;
  }

  /** What runsc and init wrote to stderr, once the host process is gone. */
  private String drainStderr() {
    CompletableFuture<byte[]> bytes = new CompletableFuture<>();
    Thread.ofVirtual()
        .start(
            () -> {
              try {
                bytes.complete(initHost.getErrorStream().readNBytes(256 << 10));
              } catch (IOException e) {
                bytes.complete(new byte[0]);
              }
            });
    try {
      String text = new String(bytes.get(2, TimeUnit.SECONDS), StandardCharsets.UTF_8).strip();
      return HostCommand.tail(text, 4000);
    } catch (Exception e) {
      return "";
    }
  }

  /** One line, byte by byte, so nothing after it is taken from the stream the caller reads. */
  static String readLine(InputStream in) throws IOException {
    var buf = new ByteArrayOutputStream();
    while (true) {
      int b = in.read();
      if (b < 0) {
        throw new EOFException("stdout ended before a full line");
      }
      if (b == '\n') {
        return buf.toString(StandardCharsets.UTF_8);
      }
      if (buf.size() < MAX_READY_LINE) {
        buf.write(b);
      }
    }
  }

  @Override
  public SandboxProcess exec(List<String> argv, List<String> env) throws IOException {
    if (argv.isEmpty()) {
      throw new IllegalArgumentException("exec needs a program to run, got an empty argv");
    }
    if (!isRunning()) {
      throw new IOException(
          "sandbox " + id + " (" + spec.name() + ") is not running; start a new sandbox");
    }
    int n = execCount.incrementAndGet();
    // Made at start; never re-created here, so an exec racing a stop cannot leave it behind.
    Path execDir = dir.resolve(EXEC_DIR);
    Path processJson = execDir.resolve(n + ".json");
    Path pidFile = execDir.resolve(n + ".pid");
    try {
      OciSpec.write(
          OciSpec.process(
              new OciSpec.ProcessSpec(
                  argv,
                  OciSpec.mergeEnv(spec.image().env(), spec.extraEnv(), env),
                  spec.image().workingDir(),
                  owner.uid(),
                  owner.gid())),
          processJson);
    } catch (NoSuchFileException e) {
      throw new IOException(
          "sandbox " + id + " (" + spec.name() + ") stopped; start a new sandbox", e);
    }
    Process host =
        new ProcessBuilder(
                runsc.command(
                    inBackground(),
                    "exec",
                    "--internal-pid-file=" + pidFile,
                    "--process=" + processJson,
                    id))
            .start();
    String what = "process " + n + " (" + argv.getFirst() + ") in sandbox " + id;
    int pid;
    try {
      pid = awaitPid(host, pidFile, owner.startTimeout());
    } catch (IOException e) {
      host.destroyForcibly();
      deleteQuietly(processJson, pidFile);
      throw new IOException("starting " + what + " failed: " + e.getMessage(), e);
    }
    // runsc has read it: the process's environment (secrets among it) stays in no file.
    deleteQuietly(processJson);
    CompletableFuture<Integer> exited = host.onExit().thenCompose(h -> execStatus(h.exitValue()));
    RunscProcess p =
        new RunscProcess(
            what, host, host.getInputStream(), exited, () -> runsc.killProcess(id, pid));
    execs.add(p);
    host.onExit()
        .thenRun(
            () -> {
              execs.remove(p);
              deleteQuietly(processJson, pidFile);
            });
    return p;
  }

  /**
   * runsc exec reports its own failure as 128. When that happens because the sandbox went away
   * underneath (killed for memory, or stopped), the process was killed with it: report SIGKILL.
   */
  private CompletableFuture<Integer> execStatus(int status) {
    if (status != 128) {
      return CompletableFuture.completedFuture(status);
    }
    return init.exited()
        .copy()
        .thenApply(initStatus -> 128 + 9)
        .completeOnTimeout(128, 2, TimeUnit.SECONDS);
  }

  /**
   * Waits for runsc to write the process's pid inside the sandbox, which it does once the process
   * started; fails with runsc's stderr when runsc exits first.
   */
  private static int awaitPid(Process host, Path pidFile, Duration timeout) throws IOException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (true) {
      boolean exited = !host.isAlive();
      Integer pid = readPid(pidFile);
      if (pid != null) {
        return pid;
      }
      if (exited) {
        String err;
        try {
          err = new String(host.getErrorStream().readNBytes(8 << 10), StandardCharsets.UTF_8);
        } catch (IOException e) {
          err = "";
        }
        throw new IOException(
            "runsc exec exited with status " + host.exitValue() + ": " + err.strip());
      }
      if (System.nanoTime() > deadline) {
        throw new IOException(
            "runsc exec did not start the process within " + timeout.toMillis() + " ms");
      }
      try {
        Thread.sleep(1);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while starting a process", e);
      }
    }
  }

  private static Integer readPid(Path pidFile) {
    try {
      String s = Files.readString(pidFile).strip();
      return s.isEmpty() ? null : Integer.valueOf(s);
    } catch (IOException | NumberFormatException e) {
      return null;
    }
  }

  private static void deleteQuietly(Path... files) {
    for (Path f : files) {
      try {
        Files.deleteIfExists(f);
      } catch (IOException e) {
        // Removed with the sandbox directory anyway.
      }
    }
  }

  /**
   * A sandbox started in the background gives way to any other work at once (see {@link
   * Cgroups#idleCpuPriority}) from the moment runsc has made its cgroup, early in its boot: until
   * then, or until its readiness {@code line} comes, this looks for the cgroup every 2 ms.
   */
  private void awaitIdleCgroup(CompletableFuture<String> line, Duration timeout)
      throws InterruptedException, IOException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!line.isDone() && System.nanoTime() < deadline && !toIdleCpuPriority()) {
      try {
        line.get(2, TimeUnit.MILLISECONDS);
      } catch (TimeoutException | ExecutionException e) {
        // Not ready yet, or failed: the caller looks at the line itself.
      }
    }
  }

  /**
   * Until {@link #toForeground}, makes the sandbox's cgroup idle, once; false while runsc has not
   * made it yet.
   */
  private boolean toIdleCpuPriority() throws IOException {
    synchronized (priority) {
      if (!idle && !foreground) {
        idle = Cgroups.idleCpuPriority(cgroups());
      }
      return idle || foreground;
    }
  }

  /** This sandbox's cgroup directories, looked up once. Call holding {@code priority}. */
  private List<Path> cgroups() throws IOException {
    if (cgroups == null) {
      cgroups = Cgroups.candidates(id);
    }
    return cgroups;
  }

  @Override
  public void toForeground() {
    synchronized (priority) {
      foreground = true;
      if (spec.background() && isRunning()) {
        try {
          Cgroups.normalCpuPriority(cgroups());
        } catch (IOException e) {
          log.warn("sandbox {}: could not restore its CPU priority: {}", id, e.toString());
        }
      }
    }
  }

  @Override
  public OptionalLong memoryBytes() {
    return isRunning() ? Cgroups.memoryBytes(id) : OptionalLong.empty();
  }

  @Override
  public boolean isRunning() {
    return !stopStarted.get() && initHost.isAlive();
  }

  @Override
  public CompletableFuture<Void> stopped() {
    return stopped;
  }

  @Override
  public void close() {
    stop("it was closed", true);
  }

  /**
   * Stops the sandbox once; every caller returns when it has stopped. Never throws. {@code
   * graceful}: give init the grace period after stdin EOF before killing it.
   */
  void stop(String reason, boolean graceful) {
    if (!stopStarted.compareAndSet(false, true)) {
      stopped.join();
      return;
    }
    long t0 = System.nanoTime();
    // Cleanup must finish even on an interrupted thread; the interrupt is restored afterwards.
    boolean interrupted = Thread.interrupted();
    try {
      endProcesses(graceful ? owner.stopGracePeriod() : Duration.ZERO);
    } catch (InterruptedException e) {
      interrupted = true;
      initHost.destroyForcibly();
    } catch (RuntimeException e) {
      log.error("ending the processes of sandbox {} failed", id, e);
    }
    try {
      // On a thread of its own, which nothing interrupts: an interrupt that reaches the caller
      // while `runsc delete` or the unmount runs (a server shutting down interrupts its pipeline
      // threads) would otherwise leave the root file system mounted.
      Thread cleaner =
          Thread.ofVirtual()
              .name("kiln-stop-" + id)
              .start(
                  () -> {
                    try {
                      cleanUp();
                    } catch (IOException | RuntimeException e) {
                      log.error(
                          "cleaning up sandbox {} failed; the next provisioner start reaps what is"
                              + " left",
                          id,
                          e);
                    }
                  });
      while (true) {
        try {
          cleaner.join();
          break;
        } catch (InterruptedException e) {
          interrupted = true;
        }
      }
    } finally {
      owner.forget(this);
      Integer status = initHost.isAlive() ? null : initHost.exitValue();
      log.info(
          "sandbox {} ({}) stopped because {}: init status {}, up {} ms, stop took {} ms",
          id,
          spec.name(),
          reason,
          status,
          (t0 - startedNanos) / 1_000_000,
          (System.nanoTime() - t0) / 1_000_000);
      stopped.complete(null);
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  private void endProcesses(Duration grace) throws InterruptedException {
    try {
      initHost.getOutputStream().close();
    } catch (IOException e) {
      // Already closed: the init sees EOF either way.
    }
    if (initHost.isAlive() && !initHost.waitFor(grace.toMillis(), TimeUnit.MILLISECONDS)) {
      init.kill(KILL_WAIT);
    }
    // The exec'd processes die with the sandbox; their runsc processes follow within moments.
    for (RunscProcess p : new ArrayList<>(execs)) {
      if (!p.host().waitFor(2, TimeUnit.SECONDS)) {
        p.host().destroyForcibly();
      }
    }
  }

  private void cleanUp() throws IOException {
    // A sandbox stopped without ever being taken (a warm one recycled or making room) is
    // background work to the end.
    HostCommand deleted = runsc.delete(id, inBackground());
    if (!deleted.ok()) {
      log.warn("runsc delete {} failed: {}", id, deleted.diagnostics());
    }
    Cgroups.remove(id);
    // Only an unmounted directory is deleted: FileTree.delete refuses to reach through a mount.
    RootFs.unmount(rootfs);
    FileTree.delete(dir);
  }

  private boolean inBackground() {
    return spec.background() && !foreground;
  }

  @Override
  public String toString() {
    return "sandbox " + id + " (" + spec.name() + ")";
  }
}
