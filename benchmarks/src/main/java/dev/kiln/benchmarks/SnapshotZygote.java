package dev.kiln.benchmarks;

import static dev.kiln.benchmarks.SnapshotBenchmark.check;
import static dev.kiln.benchmarks.SnapshotBenchmark.ms;
import static java.nio.file.StandardOpenOption.WRITE;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageLayer;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.SandboxBundle;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.RunnerProcess;
import dev.kiln.worker.StartRunners;
import dev.kiln.worker.UdfSignature;
import java.io.ByteArrayInputStream;
import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.SequenceInputStream;
import java.io.UncheckedIOException;
import java.nio.charset.Charset;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.stream.Stream;
import org.apache.arrow.memory.BufferAllocator;

/**
 * The zygote side of {@link SnapshotBenchmark}: sandboxes run with runsc directly (the provisioner
 * has no checkpoint API), with the provisioner's global flags and a bundle like its own (user,
 * rlimits, scratch mount, memory and CPU limits) over the image's layers extracted into one
 * directory.
 *
 * <p>The runner is the sandbox's init, so its stdio are the pipes of {@code runsc run}; {@code
 * runsc restore} gives the restored init its own new pipes, and the runner answers on them. What
 * runsc 20221219 needs for that, as measured here: the init's stdio must be pipes at the checkpoint
 * as at the restore (a restored host fd keeps the kind it had: a file at the checkpoint and a pipe
 * at the restore makes every write fail with ESPIPE), and no other process may hold host fds: a
 * runner started with {@code runsc exec} (Kiln's layout) keeps those of its {@code runsc exec}, and
 * such a checkpoint cannot be restored at all ({@link #execdRunner} reports runsc's error).
 */
final class SnapshotZygote {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration TIMEOUT = Duration.ofSeconds(120);
  private static final Charset UTF8 = StandardCharsets.UTF_8;

  private final Path dir;
  private final Path rootfs;
  private final BuiltImage image;
  private final Limits limits;
  private final StartRunners starter;
  private final List<String> env;
  private byte[] ready;

  SnapshotZygote(Path dir, BuiltImage image, Limits limits, StartRunners starter) throws Exception {
    this.dir = Files.createDirectories(dir);
    this.rootfs = Files.createDirectories(dir.resolve("rootfs"));
    this.image = image;
    this.limits = limits;
    this.starter = starter;
    Map<String, String> vars = new LinkedHashMap<>();
    for (String kv : image.env()) {
      vars.put(kv.substring(0, kv.indexOf('=')), kv);
    }
    RunnerFiles.environment().forEach((k, v) -> vars.put(k, k + "=" + v));
    long perRunner = RunnerPool.Options.memoryPerRunner(limits.memoryBytes(), 1);
    vars.put("KILN_MEMORY_LIMIT", "KILN_MEMORY_LIMIT=" + perRunner);
    vars.put("MALLOC_ARENA_MAX", "MALLOC_ARENA_MAX=2");
    this.env = List.copyOf(vars.values());
    for (ImageLayer l : image.layers()) {
      String z = l.mediaType().endsWith("gzip") ? "z" : "";
      run(List.of("tar", "-x" + z + "f", l.blob().toString(), "-C", rootfs.toString()));
    }
  }

  /** The global flags of the provisioner's {@code Runsc}, then {@code sub}. */
  List<String> runsc(String... sub) {
    return runsc(List.of(), sub);
  }

  /** The global flags of the provisioner's {@code Runsc}, then {@code extra}, then {@code sub}. */
  List<String> runsc(List<String> extra, String... sub) {
    List<String> argv =
        new ArrayList<>(
            List.of(
                "runsc",
                "--root=" + dir.resolve("state"),
                "--platform=ptrace",
                "--network=none",
                "--overlay2=root:memory",
                "--cpu-num-from-quota"));
    argv.addAll(extra);
    argv.addAll(List.of(sub));
    return argv;
  }

  /** One cold start and its checkpoint; the image is kept when {@code keep}. */
  record Cold(ObjectNode json, Path image) {}

  Cold coldAndCheckpoint(String id, boolean keep, UdfSignature signature, BufferAllocator allocator)
      throws Exception {
    Path bundle = bundle(id, RunnerFiles.serveCommand());
    long t0 = System.nanoTime();
    Process p = new ProcessBuilder(runsc("run", "--bundle=" + bundle, id)).start();
    byte[] frame = readyFrame(p);
    long t1 = System.nanoTime();
    if (ready == null) {
      ready = frame;
    }
    ObjectNode n = JSON.createObjectNode();
    n.put("ready_ms", ms(t1 - t0));
    Path img = Files.createDirectories(dir.resolve("checkpoint-" + id));
    // One batch before the checkpoint: a zygote is checkpointed warm, its first call made.
    try (RunnerPool pool =
        starter.start(signature, e -> hostRunner(p, frame), 1, limits.memoryBytes())) {
      check(pool, allocator);
      long t2 = System.nanoTime();
      Result c = exec(runsc("checkpoint", "--image-path=" + img, id));
      long t3 = System.nanoTime();
      n.put("first_result_ms", ms(t2 - t0));
      if (c.status() != 0) {
        n.put("checkpoint_error", c.output());
        System.out.println("runsc checkpoint failed: " + c.output());
      } else {
        n.put("checkpoint_ms", ms(t3 - t2));
        n.put("image_mib", Math.round(sizeOf(img) / 104857.6) / 10.0);
      }
      p.waitFor(30, TimeUnit.SECONDS);
    } finally {
      p.destroyForcibly();
      exec(runsc("delete", "--force", id));
    }
    if (!keep) {
      BuildBenchmark.deleteTree(img);
    }
    return new Cold(n, img);
  }

  /** Restores {@code checkpoint} as container {@code id}, then calls it once. */
  ObjectNode restore(
      Path checkpoint, String id, UdfSignature signature, BufferAllocator allocator) {
    ObjectNode n = JSON.createObjectNode();
    n.put("container", id);
    try {
      Path bundle = bundle(id, RunnerFiles.serveCommand());
      long t0 = System.nanoTime();
      Process p =
          new ProcessBuilder(
                  runsc("restore", "--image-path=" + checkpoint, "--bundle=" + bundle, id))
              .start();
      RunnerProcess runner = hostRunner(p, ready);
      try (RunnerPool pool = starter.start(signature, e -> runner, 1, limits.memoryBytes())) {
        long t1 = System.nanoTime();
        check(pool, allocator);
        long t2 = System.nanoTime();
        n.put("pool_started_ms", ms(t1 - t0));
        n.put("first_result_ms", ms(t2 - t0));
      } finally {
        p.waitFor(30, TimeUnit.SECONDS);
        p.destroyForcibly();
        exec(runsc("delete", "--force", id));
      }
    } catch (Exception e) {
      n.put("error", String.valueOf(e));
      System.out.println("restore " + id + " failed: " + e);
    }
    return n;
  }

  /**
   * Kiln's own layout: the runner's {@code init} as the sandbox's init and a runner started with
   * {@code runsc exec}, checkpointed once it is READY and restored. Returns what happened.
   */
  String execdRunner() throws Exception {
    String id = "execd";
    Path bundle = bundle(id, RunnerFiles.initCommand());
    Process init = new ProcessBuilder(runsc("run", "--bundle=" + bundle, id)).start();
    new DataInputStream(init.getInputStream()).readNBytes("ready\n".length());
    Path processJson =
        SandboxBundle.writeProcess(
            bundle.resolve("runner.json"), RunnerFiles.serveCommand(), env, image.workingDir());
    Process runner = new ProcessBuilder(runsc("exec", "--process=" + processJson, id)).start();
    readyFrame(runner);
    Path img = Files.createDirectories(dir.resolve("checkpoint-execd"));
    Result c = exec(runsc("checkpoint", "--image-path=" + img, id));
    init.waitFor(30, TimeUnit.SECONDS);
    runner.waitFor(30, TimeUnit.SECONDS);
    exec(runsc("delete", "--force", id));
    if (c.status() != 0) {
      return "runsc checkpoint failed: " + c.output();
    }
    String rid = "execd-restored";
    Path rbundle = bundle(rid, RunnerFiles.initCommand());
    Process p =
        new ProcessBuilder(runsc("restore", "--image-path=" + img, "--bundle=" + rbundle, rid))
            .redirectErrorStream(true)
            .start();
    String out;
    try {
      boolean ended = p.waitFor(30, TimeUnit.SECONDS);
      out =
          ended
              ? "runsc restore exited with status "
                  + p.exitValue()
                  + ": "
                  + restoreError(new String(p.getInputStream().readAllBytes(), UTF8))
              : "runsc restore is running after 30 s (the restore worked)";
    } finally {
      p.getOutputStream().close();
      p.destroyForcibly();
      exec(runsc("delete", "--force", rid));
    }
    return out;
  }

  /**
   * Imports pandas, then answers each message on FIFO /chan/in with "echo " + it on /chan/out, with
   * the stdio of its {@code runsc exec} swapped for /dev/null so that it holds no host fd; a FIFO
   * end that the host closed (EOF, EPIPE) is opened again.
   */
  private static final String FIFO_ECHO =
      """
      import os, numpy, pandas
      print("ready", flush=True)
      null = os.open("/dev/null", os.O_RDWR)
      for fd in (0, 1, 2):
          os.dup2(null, fd)
      r, w = os.open("/chan/in", os.O_RDONLY), os.open("/chan/out", os.O_WRONLY)
      while True:
          d = os.read(r, 100)
          if not d:
              os.close(r)
              r = os.open("/chan/in", os.O_RDONLY)
              continue
          try:
              os.write(w, b"echo " + d)
          except BrokenPipeError:
              os.close(w)
              w = os.open("/chan/out", os.O_WRONLY)
              os.write(w, b"echo " + d)
      """;

  /**
   * Kiln's layout made restorable: a pandas process started with {@code runsc exec} that talks over
   * FIFOs in a host directory bound into the sandbox ({@code --host-fifo=open}) instead of its
   * stdio ({@link #FIFO_ECHO}), checkpointed, then restored {@code restores} times; each restore
   * until the process answers on the FIFOs.
   */
  ObjectNode execdOverFifos(int restores) throws Exception {
    ObjectNode n = JSON.createObjectNode();
    Path chan = Files.createDirectories(dir.resolve("chan"));
    run(List.of("mkfifo", "-m", "666", chan + "/in", chan + "/out"));
    List<String> fifo = List.of("--host-fifo=open");
    String id = "fifo";
    Path bundle = bundle(id, RunnerFiles.initCommand(), chan);
    Process init = new ProcessBuilder(runsc(fifo, "run", "--bundle=" + bundle, id)).start();
    init.getInputStream().readNBytes("ready\n".length());
    Path processJson =
        SandboxBundle.writeProcess(
            bundle.resolve("echo.json"),
            List.of("python3", "-c", FIFO_ECHO),
            env,
            image.workingDir());
    Process echo = new ProcessBuilder(runsc(fifo, "exec", "--process=" + processJson, id)).start();
    echo.getInputStream().readNBytes("ready\n".length());
    Path img = Files.createDirectories(dir.resolve("checkpoint-fifo"));
    Result c;
    // The host keeps its ends open over the checkpoint: a process that saw EOF would block in
    // open() of the FIFO, and runsc checkpoint then waits for it without end (seen here).
    try (HostEnds ends = HostEnds.open(chan)) {
      n.put("before_checkpoint", ends.talk("before"));
      c = exec(runsc(fifo, "checkpoint", "--image-path=" + img, id));
      init.waitFor(30, TimeUnit.SECONDS);
      echo.waitFor(30, TimeUnit.SECONDS);
    } finally {
      init.destroyForcibly();
      echo.destroyForcibly();
      exec(runsc(fifo, "delete", "--force", id));
    }
    if (c.status() != 0) {
      return n.put("error", "runsc checkpoint failed: " + c.output());
    }
    n.put("image_mib", Math.round(sizeOf(img) / 104857.6) / 10.0);
    ArrayNode out = n.putArray("restores");
    for (int i = 0; i < restores; i++) {
      String rid = "fifo-r" + i;
      Path rbundle = bundle(rid, RunnerFiles.initCommand(), chan);
      long t0 = System.nanoTime();
      Process p =
          new ProcessBuilder(
                  runsc(fifo, "restore", "--image-path=" + img, "--bundle=" + rbundle, rid))
              .start();
      try (HostEnds ends = HostEnds.open(chan)) {
        String answer = ends.talk("after restore " + i);
        out.addObject().put("answer", answer).put("answer_ms", ms(System.nanoTime() - t0));
        p.getOutputStream().close(); // the init ends, and the sandbox with it
        p.waitFor(10, TimeUnit.SECONDS);
      } catch (Exception e) {
        out.addObject().put("error", e + "; runsc: " + (p.isAlive() ? "running" : p.exitValue()));
      } finally {
        p.destroyForcibly();
        exec(runsc(fifo, "delete", "--force", rid));
      }
    }
    return n;
  }

  /** The host's ends of the FIFOs in chan; opening them waits for the sandbox to open its own. */
  private record HostEnds(OutputStream in, InputStream out) implements AutoCloseable {
    static HostEnds open(Path chan) throws Exception {
      return within(
          () ->
              new HostEnds(
                  Files.newOutputStream(chan.resolve("in"), WRITE),
                  Files.newInputStream(chan.resolve("out"))));
    }

    /** Writes {@code text} and reads the answer ("echo " + text). */
    String talk(String text) throws Exception {
      return within(
          () -> {
            in.write(text.getBytes(UTF8));
            in.flush();
            return new String(out.readNBytes(5 + text.length()), UTF8);
          });
    }

    @Override
    public void close() throws IOException {
      in.close();
      out.close();
    }
  }

  interface Io<T> {
    T get() throws IOException;
  }

  /** {@code io} on a virtual thread, failing after {@link #TIMEOUT}. */
  static <T> T within(Io<T> io) throws Exception {
    CompletableFuture<T> f =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                return io.get();
              } catch (IOException e) {
                throw new UncheckedIOException(e);
              }
            },
            r -> Thread.ofVirtual().start(r));
    return f.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
  }

  /** A bundle directory for container {@code id} running {@code argv} as its init. */
  Path bundle(String id, List<String> argv) throws IOException {
    return bundle(id, argv, null);
  }

  /** The same, with host directory {@code chan} (when not null) bound at /chan. */
  Path bundle(String id, List<String> argv, Path chan) throws IOException {
    return SandboxBundle.write(
        dir.resolve("bundle-" + id),
        "kiln-snap-" + id,
        argv,
        env,
        image.workingDir(),
        rootfs,
        limits,
        chan == null ? Map.of() : Map.of("/chan", chan));
  }

  /** Cgroups the zygote sandboxes left (runsc delete does not always remove them). */
  static void removeCgroups() throws Exception {
    run(
        List.of(
            "sh",
            "-c",
            "find /sys/fs/cgroup -depth -type d -name 'kiln-snap-*' -exec rmdir {} + 2>/dev/null;"
                + " true"));
  }

  /**
   * A runner that is a sandbox's init under {@code runsc run} or {@code runsc restore}; {@code
   * replay} is read before its stdout (the READY frame a restored runner sent before the
   * checkpoint).
   */
  static RunnerProcess hostRunner(Process process, byte[] replay) {
    return RunnerProcess.of(
        process,
        new SequenceInputStream(new ByteArrayInputStream(replay), process.getInputStream()));
  }

  /**
   * The runner's first frame (length u32 LE, type u8, payload), which must be READY (type 1); fails
   * with runsc's stderr when the process ends or {@link #TIMEOUT} passes first.
   */
  static byte[] readyFrame(Process p) throws Exception {
    CompletableFuture<byte[]> frame =
        CompletableFuture.supplyAsync(
            () -> {
              try {
                DataInputStream in = new DataInputStream(p.getInputStream());
                byte[] head = in.readNBytes(5);
                int len =
                    (head[0] & 0xff)
                        | (head[1] & 0xff) << 8
                        | (head[2] & 0xff) << 16
                        | (head[3] & 0xff) << 24;
                byte[] all = new byte[5 + len];
                System.arraycopy(head, 0, all, 0, 5);
                in.readFully(all, 5, len);
                return all;
              } catch (IOException e) {
                throw new IllegalStateException(e);
              }
            },
            r -> Thread.ofVirtual().start(r));
    try {
      byte[] f = frame.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
      if (f[4] != 1) {
        throw new IllegalStateException(
            "the runner's first frame is type "
                + f[4]
                + ": "
                + new String(f, 5, f.length - 5, UTF8));
      }
      return f;
    } catch (Exception e) {
      p.destroyForcibly();
      String stderr;
      try {
        stderr = within(() -> new String(p.getErrorStream().readAllBytes(), UTF8));
      } catch (Exception unread) {
        stderr = "(unread: " + unread + ")";
      }
      throw new IllegalStateException("no READY from the runner: " + e + "; stderr: " + stderr, e);
    }
  }

  /** The line of runsc's output that says why the restore failed, or its tail. */
  static String restoreError(String output) {
    return output
        .lines()
        .filter(l -> l.contains("restoring container"))
        .findFirst()
        .orElse(output.length() > 800 ? output.substring(output.length() - 800) : output)
        .strip();
  }

  record Result(int status, String output) {}

  /**
   * Runs a short command to its end (or {@link #TIMEOUT}); its status and output (both streams).
   */
  static Result exec(List<String> command) throws Exception {
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    try {
      String out = within(() -> new String(p.getInputStream().readAllBytes(), UTF8).strip());
      return new Result(p.waitFor(), out);
    } catch (TimeoutException e) {
      p.destroyForcibly();
      return new Result(-1, String.join(" ", command) + " did not end within " + TIMEOUT);
    }
  }

  /** Runs a command that must succeed; its output. */
  static String run(List<String> command) throws Exception {
    Result r = exec(command);
    if (r.status() != 0) {
      throw new IOException(
          String.join(" ", command) + " failed (" + r.status() + "): " + r.output());
    }
    return r.output();
  }

  static long sizeOf(Path dir) throws IOException {
    try (Stream<Path> s = Files.walk(dir)) {
      return s.filter(Files::isRegularFile).mapToLong(p -> p.toFile().length()).sum();
    }
  }
}
