package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.SandboxRunners;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.image.BuildImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.Runtimes;
import dev.kiln.image.WheelLayers;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.RunscProvisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.IndexConfig;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.LockedPackage;
import dev.kiln.resolver.PackageResolver;
import dev.kiln.resolver.TargetEnvironment;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.StartRunners;
import dev.kiln.worker.UdfSignature;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.FieldVector;

/**
 * gVisor checkpoint/restore of a runner that has imported pandas (issue 12, part 3): would a warm
 * pool restore a checkpointed "zygote" faster than it starts a sandbox and a runner cold?
 *
 * <ul>
 *   <li><b>cold (Kiln)</b>: {@link RunscProvisioner#start} of the UDF's image, then one runner
 *       ({@link StartRunners}, the runner imports pandas with the UDF) until READY, then one batch;
 *   <li><b>cold (zygote)</b>: {@code runsc run} of the same image with the runner itself as the
 *       sandbox's init, until its READY frame and until its first result;
 *   <li><b>checkpoint</b>: {@code runsc checkpoint} of that sandbox after its first batch (a zygote
 *       is checkpointed warm): time, image size on disk;
 *   <li><b>restore</b>: {@code runsc restore} from one and the same checkpoint, every run, until
 *       the restored runner answers one batch through the worker's own {@link RunnerPool} (the
 *       READY frame it sent before the checkpoint is replayed to the pool); at the end two restores
 *       of it at once;
 *   <li><b>exec'd runner</b>: Kiln's own layout (init plus a runner started with {@code runsc
 *       exec}) checkpointed and restored once; runsc's answer is reported verbatim;
 *   <li><b>exec'd process over FIFOs</b>: the same layout with a pandas process that talks over
 *       FIFOs in a host directory bound into the sandbox instead of its stdio, restored twice;
 *   <li><b>peer</b>: {@code runsc --platform=ptrace --network=none do true}.
 * </ul>
 *
 * <p>The image is built as the control plane builds it (resolver against the machine's PyPI mirror
 * served over HTTP on loopback, one layer per wheel, the runner layer, the code layer). The zygote
 * sandboxes use the provisioner's global runsc flags and a bundle like its own (same user, rlimits,
 * scratch mounts, memory and CPU limits) over the image's layers extracted into one directory.
 * runsc is called directly for them ({@link SnapshotZygote}): the provisioner has no checkpoint
 * API. Each run measures the three paths one after the other, so a drift in the machine's speed (a
 * shared VM) reaches all three.
 *
 * <p>Run: {@code bin/bench snapshot [RUNS]} (default 5). Writes {@code
 * benchmarks/target/results/snapshot.json}.
 */
public final class SnapshotBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Duration TIMEOUT = Duration.ofSeconds(120);
  private static final String HANDLER = "plus_one";
  private static final String CODE =
      "import numpy\nimport pandas\n\n\ndef plus_one(x):\n"
          + "    return int(pandas.Series([x], dtype=numpy.int64).sum()) + 1\n";

  private SnapshotBenchmark() {}

  public static void main(String[] args) throws Exception {
    int runs = args.length > 0 ? Integer.parseInt(args[0]) : 5;
    Path work = Files.createTempDirectory("kiln-snapshot-bench-");
    KilnConfig defaults = KilnConfig.builder().build();
    Limits limits = new Limits(defaults.sandboxMemoryBytes(), defaults.sandboxCpus());
    ObjectNode report = JSON.createObjectNode();
    report.put("runs", runs);
    report.put("runsc", firstLine(SnapshotZygote.run(List.of("runsc", "--version"))));
    report.put("machine_cpus", Runtime.getRuntime().availableProcessors());
    MirrorServer mirror = MirrorServer.start(Path.of("/opt/pypi"));
    try (ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor();
        BufferAllocator allocator = new RootAllocator();
        RunscProvisioner provisioner =
            RunscProvisioner.builder()
                .runsc(defaults.runsc())
                .platform(defaults.runscPlatform())
                .workDir(work.resolve("provisioner"))
                .build()) {
      UdfDefinition definition = UdfDefinition.fromSpec(spec(), List.of());
      BuiltImage image = buildImage(definition, mirror, work, executor, report);
      UdfSignature signature = UdfSignature.of(definition);
      StartRunners starter = new StartRunners(TIMEOUT);
      SnapshotZygote zygote = new SnapshotZygote(work.resolve("zygote"), image, limits, starter);

      List<Double> doTrue = new ArrayList<>();
      for (int i = 0; i < runs; i++) {
        long t0 = System.nanoTime();
        SnapshotZygote.run(List.of("runsc", "--platform=ptrace", "--network=none", "do", "true"));
        doTrue.add(ms(System.nanoTime() - t0));
      }
      // Untimed: the layers extracted for the provisioner, every file read once (page cache).
      provisioner.prepare(SandboxRunners.sandboxImage(image));
      Path checkpoint = zygote.coldAndCheckpoint("warm-up", true, signature, allocator).image();

      List<ObjectNode> cold = new ArrayList<>();
      List<ObjectNode> zygoteCold = new ArrayList<>();
      List<ObjectNode> restores = new ArrayList<>();
      for (int i = 0; i < runs; i++) {
        System.out.printf("run %d of %d%n", i + 1, runs);
        cold.add(kilnCold(provisioner, image, limits, starter, signature, allocator));
        SnapshotZygote.Cold z = zygote.coldAndCheckpoint("run" + i, false, signature, allocator);
        zygoteCold.add(z.json());
        restores.add(zygote.restore(checkpoint, "r" + i, signature, allocator));
      }
      List<CompletableFuture<ObjectNode>> twice = new ArrayList<>();
      for (String id : List.of("both-a", "both-b")) {
        twice.add(
            CompletableFuture.supplyAsync(
                () -> zygote.restore(checkpoint, id, signature, allocator), executor));
      }
      ArrayNode concurrent = report.putArray("two_restores_at_once");
      for (CompletableFuture<ObjectNode> f : twice) {
        concurrent.add(f.join());
      }
      report.put("execd_runner_restore", zygote.execdRunner());
      try {
        report.set("execd_over_fifos", zygote.execdOverFifos(2));
      } catch (Exception e) {
        report.putObject("execd_over_fifos").put("error", String.valueOf(e));
      }

      report.put("runsc_do_true_median_ms", median(doTrue));
      report.put("cold_kiln_first_result_median_ms", median(cold, "first_result_ms"));
      report.put("cold_kiln_runner_ready_median_ms", median(cold, "ready_ms"));
      report.put("cold_kiln_sandbox_median_ms", median(cold, "sandbox_ms"));
      report.put("cold_zygote_ready_median_ms", median(zygoteCold, "ready_ms"));
      report.put("cold_zygote_first_result_median_ms", median(zygoteCold, "first_result_ms"));
      report.put("checkpoint_median_ms", median(zygoteCold, "checkpoint_ms"));
      report.put("checkpoint_image_median_mib", median(zygoteCold, "image_mib"));
      report.put("restore_first_result_median_ms", median(restores, "first_result_ms"));
      report.put("restores_from_one_checkpoint", restores.size() + 2);
      add(report.putArray("cold_kiln"), cold);
      add(report.putArray("cold_zygote_and_checkpoint"), zygoteCold);
      add(report.putArray("restore"), restores);
      report.put(
          "stdio",
          "the restored init's stdin/stdout/stderr are the pipes runsc restore is given (they must"
              + " be pipes at the checkpoint too); a process started with runsc exec keeps host fds"
              + " that cannot be restored (execd_runner_restore) unless it gives up its stdio and"
              + " talks over FIFOs in a host directory bound into the sandbox, with"
              + " --host-fifo=open (execd_over_fifos)");
      print(report);
    } finally {
      mirror.stop();
      SnapshotZygote.removeCgroups();
      BuildBenchmark.deleteTree(work);
    }
    Path out = Path.of("benchmarks/target/results/snapshot.json");
    Files.createDirectories(out.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
    System.out.println("wrote " + out.toAbsolutePath());
  }

  /** The UDF: one BIGINT in, one out, pandas and numpy imported when the runner loads it. */
  static String spec() {
    return ColdStartBenchmark.spec(HANDLER, CODE, List.of("pandas"));
  }

  /** The UDF's image, as the control plane builds it, with pandas from the local mirror. */
  static BuiltImage buildImage(
      UdfDefinition definition,
      MirrorServer mirror,
      Path work,
      ExecutorService executor,
      ObjectNode report)
      throws Exception {
    KilnConfig defaults = KilnConfig.builder().build();
    Path base = Path.of(defaults.baseImage());
    TargetEnvironment python = BuildBenchmark.probe(base, work.resolve("probe"));
    Runtimes runtimes = Runtimes.open(Map.of(), defaults.baseImage(), "", work.resolve("images"));
    Runtimes.Runtime runtime = runtimes.all().getFirst();
    try (PackageResolver resolver =
        new PackageResolver(
            new IndexConfig(
                List.of(mirror.uri("simple/")),
                Optional.empty(),
                Optional.empty(),
                Duration.ofSeconds(60)),
            work.resolve("resolver"))) {
      Lock lock = resolver.resolve(definition.requirementTexts(), python);
      List<FetchInputs.Fetched> wheels = new ArrayList<>();
      ArrayNode locked = report.putArray("packages");
      for (LockedPackage pkg : lock.packages()) {
        Path file = Files.createDirectories(work.resolve("wheels")).resolve(pkg.filename());
        try (OutputStream out = Files.newOutputStream(file)) {
          resolver.download(pkg, out);
        }
        wheels.add(new FetchInputs.Fetched(pkg.filename(), new Digest(pkg.sha256()), file));
        locked.add(pkg.name() + "==" + pkg.version());
      }
      BuildImage images =
          new BuildImage(
              new WheelLayers(work.resolve("wheel-layers")),
              SandboxRunners.runnerLayer(),
              executor);
      return images
          .build(
              new BuildImage.Recipe(
                  runtime,
                  python,
                  definition.key(runtime.digest(), RunnerFiles.version()),
                  definition.handler(),
                  RunnerFiles.udfFiles(definition.spec()),
                  lock,
                  wheels,
                  List.of()))
          .image();
    }
  }

  /** Kiln's cold path: a sandbox from the provisioner, one runner, one batch. */
  static ObjectNode kilnCold(
      RunscProvisioner provisioner,
      BuiltImage image,
      Limits limits,
      StartRunners starter,
      UdfSignature signature,
      BufferAllocator allocator)
      throws Exception {
    long t0 = System.nanoTime();
    SandboxSpec spec =
        new SandboxSpec("snapshot", SandboxRunners.sandboxImage(image), limits, List.of());
    try (Sandbox sandbox = provisioner.start(spec)) {
      long t1 = System.nanoTime();
      try (RunnerPool pool =
          starter.start(signature, SandboxRunners.launcher(sandbox), 1, limits.memoryBytes())) {
        long t2 = System.nanoTime();
        check(pool, allocator);
        long t3 = System.nanoTime();
        ObjectNode n = JSON.createObjectNode();
        n.put("sandbox_ms", ms(t1 - t0));
        n.put("ready_ms", ms(t2 - t0));
        n.put("first_result_ms", ms(t3 - t0));
        return n;
      }
    }
  }

  /** Calls the UDF with 41 and checks that 42 comes back. */
  static void check(RunnerPool pool, BufferAllocator allocator) throws Exception {
    try (BigIntVector in = new BigIntVector("x", allocator)) {
      in.allocateNew(1);
      in.set(0, 41);
      in.setValueCount(1);
      try (FieldVector out = pool.call(List.of(in), 1, allocator)) {
        long got = ((BigIntVector) out).get(0);
        if (got != 42) {
          throw new IllegalStateException("plus_one(41) returned " + got);
        }
      }
    }
  }

  private static void print(ObjectNode r) {
    System.out.println();
    System.out.println(
        "Snapshot of a runner that imported pandas ("
            + r.get("packages")
            + "), medians of "
            + r.get("runs").asInt()
            + " runs");
    System.out.printf("%-52s %10s %14s%n", "path", "ready", "first result");
    row(
        "cold: provisioner sandbox + runner (Kiln today)",
        r,
        "cold_kiln_runner_ready_median_ms",
        "cold_kiln_first_result_median_ms");
    System.out.printf(
        "%-52s %8.0fms%n",
        "  of which the sandbox start", r.get("cold_kiln_sandbox_median_ms").asDouble());
    row(
        "cold: runsc run, runner as init (the zygote)",
        r,
        "cold_zygote_ready_median_ms",
        "cold_zygote_first_result_median_ms");
    row("restore: runsc restore of one checkpoint", r, null, "restore_first_result_median_ms");
    System.out.printf(
        "checkpoint: %.0f ms to write, image %.1f MiB on disk%n",
        r.get("checkpoint_median_ms").asDouble(), r.get("checkpoint_image_median_mib").asDouble());
    StringBuilder both = new StringBuilder();
    for (var n : r.get("two_restores_at_once")) {
      both.append(
          n.has("error")
              ? n.get("error").asText()
              : String.format("%.0f ms ", n.get("first_result_ms").asDouble()));
    }
    System.out.println("two restores of it at once, to first result: " + both.toString().strip());
    System.out.printf(
        "runsc do true (peer): %.0f ms%n", r.get("runsc_do_true_median_ms").asDouble());
    System.out.println(
        "runner started with runsc exec, restored: " + r.get("execd_runner_restore").asText());
    System.out.println(
        "process started with runsc exec, over host FIFOs (--host-fifo=open), restored: "
            + r.get("execd_over_fifos"));
  }

  private static void row(String name, ObjectNode r, String ready, String first) {
    System.out.printf(
        "%-52s %10s %12s%n",
        name,
        ready == null ? "-" : String.format("%.0fms", r.path(ready).asDouble(Double.NaN)),
        first == null ? "-" : String.format("%.0fms", r.path(first).asDouble(Double.NaN)));
  }

  private static String firstLine(String s) {
    return s.lines().findFirst().orElse("");
  }

  static double median(List<Double> values) {
    return ColdStartBenchmark.percentile(values, 50);
  }

  static double median(List<ObjectNode> rows, String field) {
    List<Double> v =
        rows.stream().filter(n -> n.has(field)).map(n -> n.get(field).asDouble()).toList();
    return v.isEmpty() ? Double.NaN : median(v);
  }

  private static void add(ArrayNode array, List<ObjectNode> rows) {
    rows.forEach(array::add);
  }

  static double ms(long nanos) {
    return Math.round(nanos / 1e5) / 10.0;
  }
}
