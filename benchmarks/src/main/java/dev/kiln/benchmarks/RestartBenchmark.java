package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.AddLoad;
import dev.kiln.controlplane.DatabendCalls;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.ServeProcess;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;

/**
 * {@code kill -9} of {@code kiln serve} under Databend's full load, and a new server at once on the
 * same ports and data directory: {@code calls} mini-batches of {@code rows} rows in flight at once
 * (Databend: 256 × 65,536), each on a new connection with Databend's retries ({@link
 * DatabendCalls}). Reports rows correct, retries used, lost and failed mini-batches, kill → "Kiln
 * ready", kill → first mini-batch that succeeded after failing across the restart, and the
 * restarted server's log with times from the kill (where a restart's time goes: the old process's
 * exit, JVM and CLI start, then {@code KilnServer.start} step by step), and CPU use of the machine
 * while it restarts. Peers, in the same run: the same load on the same server without a restart
 * (wall time), and the same kill and restart without load (what a restart costs by itself).
 *
 * <p>Run: {@code bin/bench restart [calls] [rows]} (needs runsc and the base image, as {@code kiln
 * serve}). Runs {@code control-plane/target/kiln.jar} as {@code bin/kiln} does, and writes {@code
 * benchmarks/target/results/restart.json}.
 */
public final class RestartBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();

  private RestartBenchmark() {}

  /** {@code add(BIGINT NULL, BIGINT NULL) -> BIGINT NULL} as Databend writes its spec. */
  private static String spec() {
    ObjectNode n = JSON.createObjectNode();
    n.put("version", 1);
    n.put("kind", "udf");
    n.put("language", "python");
    n.put("handler", "add");
    AddLoad.TYPES.forEach(n.putArray("input_types")::add);
    n.put("result_type", "BIGINT NULL");
    n.putArray("imports");
    n.putArray("packages");
    n.put("runtime_version", "3.12.2");
    n.put("code", AddLoad.CODE);
    return n.toString();
  }

  /** One load: outcomes of every mini-batch and when it started. */
  private record Load(DatabendCalls.Outcome[] outcomes, long startNanos, long endNanos) {}

  public static void main(String[] args) throws Exception {
    int calls = args.length > 0 ? Integer.parseInt(args[0]) : 256;
    int rows = args.length > 1 ? Integer.parseInt(args[1]) : 65_536;
    Path dir = Files.createTempDirectory("kiln-restart-bench-");
    Path data = dir.resolve("data");
    ServeProcess.Ports ports = ServeProcess.Ports.free();
    // A server that has been stopped cleanly once, as a deployed one has: that stop writes the
    // class-data archive every later start uses (bin/kiln serve's, written again for a new jar).
    start(dir, "prime", ports, data).stop();
    ServeProcess first = start(dir, "first", ports, data);
    ServeProcess second = null;
    ObjectNode report = JSON.createObjectNode();
    report.put("calls", calls).put("rows_per_call", rows);
    try (BufferAllocator allocator = new RootAllocator()) {
      DatabendClient.Resource r;
      try (DatabendClient api = new DatabendClient("127.0.0.1:" + ports.grpc())) {
        r = api.apply("bench", spec(), List.of(), Duration.ofSeconds(120));
      }
      DatabendCalls client =
          new DatabendCalls(
              allocator,
              new DatabendCalls.Target(
                  r.endpoint(), r.headers(), "bench", "add", "add", "restart-bench"));

      // Peer: the same load without a restart (also warms the server and this JVM).
      Load peer = run(allocator, client, calls, rows, null, new CountDownLatch(1));
      ObjectNode peerNode = summary(peer, rows, Long.MAX_VALUE);
      close(peer);
      report.set("peer_no_restart", peerNode);
      System.out.printf("peer (no restart): %s%n", peerNode);

      CountDownLatch firstDone = new CountDownLatch(1);
      long[] kill = new long[3];
      ServeProcess[] restarted = new ServeProcess[1];
      CpuSampler cpu = new CpuSampler();
      Load load =
          run(
              allocator,
              client,
              calls,
              rows,
              () -> {
                firstDone.await();
                cpu.start(first.process().pid());
                kill[0] = System.nanoTime();
                kill[1] = System.currentTimeMillis();
                first.process().destroyForcibly(); // SIGKILL
                first.process().waitFor();
                kill[2] = System.currentTimeMillis();
                restarted[0] = start(dir, "second", ports, data);
                cpu.server(restarted[0].process().pid());
              },
              firstDone);
      cpu.stop();
      second = restarted[0];
      ObjectNode restart = summary(load, rows, kill[0]);
      restart.put("kill_after_ms", TimeUnit.NANOSECONDS.toMillis(kill[0] - load.startNanos()));
      restart.put(
          "done_at_kill",
          java.util.Arrays.stream(load.outcomes()).filter(o -> o.endNanos() <= kill[0]).count());
      times(restart, second, kill[1], kill[2]);
      restart.put("first_server_jvm_and_cli_start_ms", first.jvmStartMillis());
      restart.put("first_jvm_start_ms", first.jvmStartMillis());
      close(load);
      report.set("restart", restart);
      System.out.printf("kill -9 and restart under load: %s%n", restart);
      System.out.println(
          "CPU from the kill, per 500 ms (% of one core: machine total / this JVM / old server /"
              + " new server / other processes visible here):");
      cpu.samples().forEach(line -> System.out.println("  " + line));
      System.out.println("the restarted server's log, from the kill:");
      timeline(second, kill[1]);

      // The same kill and restart with no load: what a restart costs by itself.
      long idleKill = System.currentTimeMillis();
      second.process().destroyForcibly();
      second.process().waitFor();
      long idleExit = System.currentTimeMillis();
      ServeProcess third = start(dir, "third", ports, data);
      second = third;
      ObjectNode idle = JSON.createObjectNode();
      times(idle, third, idleKill, idleExit);
      report.set("restart_without_load", idle);
      System.out.printf("kill -9 and restart without load: %s%n", idle);
      timeline(third, idleKill);
    } finally {
      stop(first);
      stop(second);
    }
    if (!second.process().isAlive()) {
      deleteTree(dir);
    }
    Path out = Path.of("benchmarks/target/results/restart.json");
    Files.createDirectories(out.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
    System.out.println("wrote " + out);
  }

  /** Where the time from a kill to "Kiln ready" went. */
  private static void times(ObjectNode n, ServeProcess s, long killMs, long exitMs) {
    n.put("kill_to_exit_ms", exitMs - killMs);
    n.put("kill_to_spawn_ms", s.spawnMillis() - killMs);
    n.put("kill_to_ready_ms", s.readyMillis() - killMs);
    n.put("jvm_and_cli_start_ms", s.jvmStartMillis());
    n.put("server_start_ms", s.readyMillis() - s.spawnMillis() - s.jvmStartMillis());
  }

  /** Prints a server's log with each line's time from the kill. */
  private static void timeline(ServeProcess s, long killMs) throws IOException {
    for (String line : Files.readAllLines(s.output(), StandardCharsets.UTF_8)) {
      long at = ServeProcess.stampMillis(line, killMs);
      System.out.printf("  %s  %s%n", at < 0 ? "        " : "+%5d ms".formatted(at - killMs), line);
    }
  }

  /** What to do once the load is running (the kill and restart); null for none. */
  private interface During {
    void run() throws Exception;
  }

  /**
   * Runs {@code calls} mini-batches at once, a platform thread each (Databend's runtime has a task
   * each), then {@code during} on this thread; counts {@code firstDone} down when one finishes.
   */
  private static Load run(
      BufferAllocator allocator,
      DatabendCalls client,
      int calls,
      int rows,
      During during,
      CountDownLatch firstDone)
      throws Exception {
    DatabendCalls.Outcome[] outcomes = new DatabendCalls.Outcome[calls];
    List<VectorSchemaRoot> inputs = new ArrayList<>();
    for (int i = 0; i < calls; i++) {
      inputs.add(AddLoad.input(allocator, i, rows));
    }
    List<Thread> threads = new ArrayList<>();
    long start = System.nanoTime();
    try {
      for (int i = 0; i < calls; i++) {
        int n = i;
        threads.add(
            Thread.ofPlatform()
                .start(
                    () -> {
                      try {
                        outcomes[n] = client.exchange(inputs.get(n));
                      } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                      } finally {
                        firstDone.countDown();
                      }
                    }));
      }
      if (during != null) {
        during.run();
      }
      for (Thread t : threads) {
        t.join();
      }
    } finally {
      for (Thread t : threads) {
        t.interrupt();
        t.join();
      }
      inputs.forEach(VectorSchemaRoot::close);
    }
    return new Load(outcomes, start, System.nanoTime());
  }

  private static ObjectNode summary(Load load, int rows, long killNanos) {
    Map<Integer, Integer> retries = new TreeMap<>();
    long correct = 0;
    int ok = 0;
    int lost = 0;
    int failed = 0;
    long firstOkAfterKill = Long.MAX_VALUE;
    for (int i = 0; i < load.outcomes().length; i++) {
      DatabendCalls.Outcome o = load.outcomes()[i];
      retries.merge(o.retries(), 1, Integer::sum);
      switch (o.result()) {
        case OK -> {
          ok++;
          correct += rows - AddLoad.wrongRows(o, i, rows);
          if (!o.failures().isEmpty() && o.failures().getLast().atNanos() > killNanos) {
            firstOkAfterKill = Math.min(firstOkAfterKill, o.endNanos());
          }
        }
        case LOST -> lost++;
        case FAILED -> failed++;
      }
    }
    ObjectNode n = JSON.createObjectNode();
    n.put("wall_ms", TimeUnit.NANOSECONDS.toMillis(load.endNanos() - load.startNanos()));
    n.put("ok", ok).put("lost", lost).put("failed", failed);
    n.put("rows_correct", correct).put("rows_expected", (long) rows * load.outcomes().length);
    ObjectNode hist = n.putObject("retries_histogram");
    retries.forEach((k, v) -> hist.put(Integer.toString(k), v));
    if (killNanos != Long.MAX_VALUE) {
      n.put(
          "kill_to_first_ok_after_failure_ms",
          firstOkAfterKill == Long.MAX_VALUE
              ? -1
              : TimeUnit.NANOSECONDS.toMillis(firstOkAfterKill - killNanos));
      for (DatabendCalls.Outcome o : load.outcomes()) {
        if (o.result() != DatabendCalls.Result.OK) {
          DatabendCalls.Failure f = o.failures().getLast();
          n.put(
              "a_problem",
              "%s at attempt %d, %d ms after the kill, headers arrived %s: %s"
                  .formatted(
                      o.result(),
                      f.attempt(),
                      TimeUnit.NANOSECONDS.toMillis(f.atNanos() - killNanos),
                      f.headersArrived(),
                      f.message()));
          break;
        }
      }
    }
    return n;
  }

  private static void close(Load load) {
    for (DatabendCalls.Outcome o : load.outcomes()) {
      if (o != null) {
        o.close();
      }
    }
  }

  /**
   * Samples CPU use every 500 ms from /proc: the whole machine, this JVM, the killed and the new
   * server, and every other process this JVM can see (runsc, Python runners), in % of one core.
   */
  private static final class CpuSampler {
    private final List<String> samples = new java.util.concurrent.CopyOnWriteArrayList<>();
    private volatile long oldPid = -1;
    private volatile long newPid = -1;
    private volatile boolean running = true;
    private Thread thread;

    void start(long oldServer) {
      oldPid = oldServer;
      long t0 = System.nanoTime();
      thread =
          Thread.ofPlatform()
              .daemon()
              .start(
                  () -> {
                    long[] prev = snapshot();
                    while (running) {
                      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(500));
                      long[] now = snapshot();
                      double wall = (now[0] - prev[0]) / 1e9;
                      StringBuilder b =
                          new StringBuilder(
                              "+%5d ms".formatted(TimeUnit.NANOSECONDS.toMillis(now[0] - t0)));
                      double ticks = 100.0; // USER_HZ
                      b.append(
                          "  machine %4.0f%%".formatted(100 * (now[1] - prev[1]) / ticks / wall));
                      String[] names = {"bench", "old", "new", "others"};
                      for (int i = 0; i < names.length; i++) {
                        b.append(
                            "  %s %4.0f%%"
                                .formatted(
                                    names[i], 100 * (now[i + 2] - prev[i + 2]) / ticks / wall));
                      }
                      samples.add(b.toString());
                      prev = now;
                    }
                  });
    }

    void server(long pid) {
      newPid = pid;
    }

    void stop() throws InterruptedException {
      running = false;
      if (thread != null) {
        thread.join();
      }
    }

    List<String> samples() {
      return samples;
    }

    /** nanoTime, machine busy ticks, then ticks of this JVM, old, new, others. */
    private long[] snapshot() {
      long[] out = new long[6];
      out[0] = System.nanoTime();
      try {
        String[] cpu = Files.readAllLines(Path.of("/proc/stat")).get(0).trim().split("\\s+");
        for (int i = 1; i < cpu.length; i++) {
          if (i != 4 && i != 5) { // not idle, not iowait
            out[1] += Long.parseLong(cpu[i]);
          }
        }
      } catch (IOException | RuntimeException e) {
        out[1] = 0;
      }
      long self = ProcessHandle.current().pid();
      try (var dirs = Files.list(Path.of("/proc"))) {
        for (Path d : dirs.toList()) {
          String name = d.getFileName().toString();
          if (!name.chars().allMatch(Character::isDigit)) {
            continue;
          }
          long pid = Long.parseLong(name);
          long ticks;
          try {
            String stat = Files.readString(d.resolve("stat"));
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            ticks = Long.parseLong(f[11]) + Long.parseLong(f[12]);
          } catch (IOException | RuntimeException e) {
            continue;
          }
          int slot = pid == self ? 2 : pid == oldPid ? 3 : pid == newPid ? 4 : 5;
          out[slot] += ticks;
        }
      } catch (IOException e) {
        // sampled as zero
      }
      return out;
    }
  }

  private static void deleteTree(Path dir) throws IOException {
    try (var paths = Files.walk(dir)) {
      paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  /** Starts {@code kiln serve} as bin/kiln does, its output to a file, and waits for it. */
  private static ServeProcess start(Path dir, String name, ServeProcess.Ports ports, Path data)
      throws IOException {
    return ServeProcess.start(
        Path.of("control-plane/target/kiln.jar"),
        dir.resolve(name + ".log"),
        ports,
        data,
        System.getenv("KILN_BASE_IMAGE"),
        Duration.ofSeconds(120));
  }

  private static void stop(ServeProcess s) throws InterruptedException {
    if (s != null) {
      s.stop();
    }
  }
}
