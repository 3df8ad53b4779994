package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.DatabendCalls;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.definition.DataType;
import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.LocalDate;
import java.time.LocalTime;
import java.time.ZoneId;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
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
  private static final Pattern READY = Pattern.compile("Kiln ready in (\\d+) ms");
  private static final Pattern STAMP = Pattern.compile("^(\\d{2}:\\d{2}:\\d{2}\\.\\d{3}) ");
  private static final List<String> TYPES = List.of("BIGINT NULL", "BIGINT NULL");
  private static final String CODE =
      "def add(a, b):\n    return None if a is None or b is None else a + b\n";

  private RestartBenchmark() {}

  /** {@code add(BIGINT NULL, BIGINT NULL) -> BIGINT NULL} as Databend writes its spec. */
  private static String spec() {
    ObjectNode n = JSON.createObjectNode();
    n.put("version", 1);
    n.put("kind", "udf");
    n.put("language", "python");
    n.put("handler", "add");
    TYPES.forEach(n.putArray("input_types")::add);
    n.put("result_type", "BIGINT NULL");
    n.putArray("imports");
    n.putArray("packages");
    n.put("runtime_version", "3.12.2");
    n.put("code", CODE);
    return n.toString();
  }

  /** A {@code kiln serve} process, its output, and wall-clock ms of its spawn and readiness. */
  private record Serve(Process process, Path output, String readyLine, long spawnMs, long readyMs) {
    long serverStartMs() {
      Matcher m = READY.matcher(readyLine);
      return m.find() ? Long.parseLong(m.group(1)) : -1;
    }
  }

  /** One load: outcomes of every mini-batch and when it started. */
  private record Load(DatabendCalls.Outcome[] outcomes, long startNanos, long endNanos) {}

  public static void main(String[] args) throws Exception {
    int calls = args.length > 0 ? Integer.parseInt(args[0]) : 256;
    int rows = args.length > 1 ? Integer.parseInt(args[1]) : 65_536;
    Path dir = Files.createTempDirectory("kiln-restart-bench-");
    Path data = dir.resolve("data");
    int grpc = freePort();
    int flight = freePort();
    int admin = freePort();
    Serve first = start(dir, "first", grpc, flight, admin, data);
    Serve second = null;
    ObjectNode report = JSON.createObjectNode();
    report.put("calls", calls).put("rows_per_call", rows);
    try (BufferAllocator allocator = new RootAllocator()) {
      DatabendClient.Resource r;
      try (DatabendClient api = new DatabendClient("127.0.0.1:" + grpc)) {
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
      Serve[] restarted = new Serve[1];
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
                restarted[0] = start(dir, "second", grpc, flight, admin, data);
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
      restart.put(
          "first_server_jvm_and_cli_start_ms",
          first.readyMs() - first.serverStartMs() - first.spawnMs());
      restart.put("first_server_start_ms", first.serverStartMs());
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
      Serve third = start(dir, "third", grpc, flight, admin, data);
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
  private static void times(ObjectNode n, Serve s, long killMs, long exitMs) {
    n.put("kill_to_exit_ms", exitMs - killMs);
    n.put("kill_to_spawn_ms", s.spawnMs() - killMs);
    n.put("kill_to_ready_ms", s.readyMs() - killMs);
    n.put("jvm_and_cli_start_ms", s.readyMs() - s.serverStartMs() - s.spawnMs());
    n.put("server_start_ms", s.serverStartMs());
  }

  /** Prints a server's log with each line's time from the kill. */
  private static void timeline(Serve s, long killMs) throws IOException {
    for (String line : Files.readAllLines(s.output(), StandardCharsets.UTF_8)) {
      long at = stampMs(line, killMs);
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
      inputs.add(input(allocator, i, rows));
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
          correct += rows - wrongRows(o, i, rows);
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

  /** Mini-batch {@code i}: arg1 = i·rows + r (NULL every 7th), arg2 = 3r (NULL every 11th). */
  private static VectorSchemaRoot input(BufferAllocator allocator, int i, int rows)
      throws Exception {
    List<DataType> types = new ArrayList<>();
    for (String t : TYPES) {
      types.add(DataType.parse(t));
    }
    VectorSchemaRoot root = VectorSchemaRoot.create(DatabendCalls.inputSchema(types), allocator);
    BigIntVector a = (BigIntVector) root.getVector(0);
    BigIntVector b = (BigIntVector) root.getVector(1);
    a.allocateNew(rows);
    b.allocateNew(rows);
    for (int r = 0; r < rows; r++) {
      long n = (long) i * rows + r;
      if (n % 7 == 0) {
        a.setNull(r);
      } else {
        a.set(r, n);
      }
      if (n % 11 == 0) {
        b.setNull(r);
      } else {
        b.set(r, 3L * r);
      }
    }
    root.setRowCount(rows);
    return root;
  }

  /** Rows of mini-batch {@code i} whose result is not a+b (NULL when either is NULL). */
  private static int wrongRows(DatabendCalls.Outcome o, int i, int rows) {
    int wrong = 0;
    int r = 0;
    for (var column : o.columns()) {
      BigIntVector v = (BigIntVector) column;
      for (int j = 0; j < v.getValueCount(); j++, r++) {
        long n = (long) i * rows + r;
        boolean isNull = n % 7 == 0 || n % 11 == 0;
        if (isNull ? !v.isNull(j) : v.isNull(j) || v.get(j) != n + 3L * r) {
          wrong++;
        }
      }
    }
    return wrong + Math.abs(rows - r);
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /** Wall-clock ms of a log line's {@code HH:mm:ss.SSS} stamp (today or yesterday), or -1. */
  private static long stampMs(String line, long nowMs) {
    Matcher m = STAMP.matcher(line);
    if (!m.find()) {
      return -1;
    }
    ZoneId zone = ZoneId.systemDefault();
    long t =
        LocalDate.now(zone)
            .atTime(LocalTime.parse(m.group(1)))
            .atZone(zone)
            .toInstant()
            .toEpochMilli();
    return t - nowMs > TimeUnit.HOURS.toMillis(12) ? t - TimeUnit.DAYS.toMillis(1) : t;
  }

  /** Starts {@code kiln serve} as bin/kiln does, its output to a file, and waits for it. */
  private static Serve start(Path dir, String name, int grpc, int flight, int admin, Path data)
      throws Exception {
    Path jar = Path.of("control-plane/target/kiln.jar");
    List<String> cmd = new ArrayList<>();
    cmd.add(ProcessHandle.current().info().command().orElse("java"));
    cmd.addAll(
        List.of(
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--enable-native-access=ALL-UNNAMED",
            "-Dio.netty.noUnsafe=false",
            "--sun-misc-unsafe-memory-access=allow"));
    if (Files.isRegularFile(jar)) {
      cmd.addAll(List.of("-jar", jar.toString()));
    } else {
      cmd.addAll(
          List.of("-cp", System.getProperty("java.class.path"), "dev.kiln.controlplane.Kiln"));
    }
    cmd.addAll(
        List.of(
            "serve",
            "--grpc-port",
            Integer.toString(grpc),
            "--flight-port",
            Integer.toString(flight),
            "--admin-port",
            Integer.toString(admin),
            "--bind-host",
            "127.0.0.1",
            "--data-dir",
            data.toString()));
    String base = System.getenv("KILN_BASE_IMAGE");
    if (base != null && !base.isBlank()) {
      cmd.addAll(List.of("--base-image", base));
    }
    Path output = dir.resolve(name + ".log");
    long spawn = System.currentTimeMillis();
    Process p =
        new ProcessBuilder(cmd).redirectErrorStream(true).redirectOutput(output.toFile()).start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
    while (System.nanoTime() < deadline && p.isAlive()) {
      for (String line : Files.readAllLines(output, StandardCharsets.UTF_8)) {
        if (READY.matcher(line).find()) {
          return new Serve(p, output, line, spawn, stampMs(line, System.currentTimeMillis()));
        }
      }
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(10));
    }
    p.destroy();
    throw new IllegalStateException(
        "kiln serve did not become ready; output:\n" + Files.readString(output));
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

  /** Stops a server gracefully, so its sandboxes are stopped and nothing stays mounted. */
  private static void stop(Serve s) throws InterruptedException {
    if (s != null && s.process().isAlive()) {
      s.process().destroy();
      if (!s.process().waitFor(60, TimeUnit.SECONDS)) {
        s.process().destroyForcibly();
      }
    }
  }
}
