package dev.kiln.benchmarks;

import static dev.kiln.benchmarks.ThroughputBenchmark.*;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.SandboxRunners;
import dev.kiln.definition.RuntimeSpec;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.image.BuildImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.Runtimes;
import dev.kiln.image.WheelLayers;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.RunscProvisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.Lock;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerLauncher;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.StartRunners;
import dev.kiln.worker.UdfSignature;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.IntVector;

/**
 * The worker-level half of {@link ThroughputBenchmark}: the worker's {@code RunnerPool} as the
 * control plane starts it, fed pre-built batches in this JVM, against the plain-loop peer run by a
 * runner of the same sandbox.
 */
final class PoolThroughput {
  private PoolThroughput() {}

  /**
   * The worker-level measurement: the worker's {@link RunnerPool}, as the control plane starts it
   * (runners in a gVisor sandbox of the UDF's image: the default base image, the runner layer and
   * the code layer; the same sandbox limits, per-runner memory and timeouts), called directly from
   * this JVM with pre-built 65,536-row batches (strings as Utf8View), {@code inFlightPerRunner}
   * calls per runner in flight. No Flight, no client JVM: this JVM's CPU is the worker's (encoding
   * batches for the runners, decoding their results), the sandbox's is the runners'. The peer is
   * the same plain-loop UDF as {@code flight}'s, run by a runner in the same sandbox just before
   * the pool starts. Writes the report's {@code worker_pool}; returns its rows.
   */
  static ArrayNode pool(Duration measure, int inFlightPerRunner, ObjectNode report)
      throws Exception {
    int cores = Runtime.getRuntime().availableProcessors();
    Path data = Files.createTempDirectory("kiln-bench-pool-");
    dataDir = data;
    ObjectNode section = report.putObject("worker_pool");
    section.put(
        "what",
        "dev.kiln.worker.RunnerPool with its runners in a gVisor sandbox of the UDF's image, called"
            + " in the benchmark JVM with pre-built batches (Utf8View strings); no Flight, no"
            + " client JVM");
    section.put("machine_cpus", cores);
    section.put("batch_rows", ROWS);
    section.put("measure_seconds", measure.toSeconds());
    section.put("in_flight_per_runner", inFlightPerRunner);
    section.put(
        "peer",
        "the same function over the same rows in a plain Python loop in one process, no I/O,"
            + " run as a UDF in a runner of the same sandbox (same python3, same gVisor) before the"
            + " pool starts");
    ArrayNode rows = section.putArray("results");
    List<Integer> runnerCounts = cores > 1 ? List.of(1, cores) : List.of(1);
    KilnConfig defaults = KilnConfig.builder().sandboxCpus(cores).build();
    try (Runtimes runtimes =
            Runtimes.open(Map.of(), defaults.baseImage(), "", data.resolve("images"));
        ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor();
        RunscProvisioner provisioner =
            RunscProvisioner.builder()
                .runsc(defaults.runsc())
                .platform(defaults.runscPlatform())
                .workDir(data.resolve("provisioner"))
                .build();
        BufferAllocator allocator = new RootAllocator()) {
      BuildImage images =
          new BuildImage(
              new WheelLayers(data.resolve("wheel-layers")),
              SandboxRunners.runnerLayer(),
              executor);
      List<BuiltImage> built = new ArrayList<>();
      for (Function f : Function.values()) {
        built.add(udfImage(images, runtimes.all().get(0), f));
      }
      for (int runners : runnerCounts) {
        KilnConfig config = defaults.toBuilder().runnersPerSandbox(runners).build();
        for (Function f : Function.values()) {
          SandboxSpec spec =
              new SandboxSpec(
                  "bench-" + f.handler,
                  SandboxRunners.sandboxImage(built.get(f.ordinal())),
                  new Limits(config.sandboxMemoryBytes(), config.sandboxCpus()),
                  List.of());
          try (Sandbox sandbox = provisioner.start(spec);
              RunnerPool loopPeer = plainLoopPeer(sandbox, f, config)) {
            // The peer runs before and after the load (each the median of 21 loops), and the two
            // are averaged: the machine's speed drifts over a measurement, on a shared VM a lot.
            double[] before = plainLoop(loopPeer, allocator);
            RunnerLauncher launcher = SandboxRunners.launcher(sandbox);
            int n = config.effectiveRunnersPerSandbox();
            try (RunnerPool pool =
                new StartRunners(config.batchTimeout())
                    .start(
                        UdfSignature.of(RuntimeSpec.parse(udfSpec(f))),
                        launcher,
                        n,
                        config.sandboxMemoryBytes())) {
              int inFlight = inFlightPerRunner * n;
              callPool(pool, allocator, f, 1, Duration.ZERO, new long[1]);
              awaitQuiet();
              PoolLoad load =
                  poolLoad(pool, allocator, f, inFlight, Duration.ofSeconds(10), measure);
              double rate = load.rowsPerSecond();
              double[] after = plainLoop(loopPeer, allocator);
              double[] loop = {(before[0] + after[0]) / 2, Math.max(before[1], after[1])};
              ObjectNode r = rows.addObject();
              r.put("function", f.title());
              r.put("runners", n);
              r.put("sandbox_cpus", cores);
              r.put("in_flight", inFlight);
              r.put("rows_per_second", Math.round(rate));
              r.put("plain_loop_rows_per_second", Math.round(loop[0]));
              r.put("plain_loop_best_rows_per_second", Math.round(loop[1]));
              r.put("plain_loop_before_rows_per_second", Math.round(before[0]));
              r.put("plain_loop_after_rows_per_second", Math.round(after[0]));
              r.put("ratio_to_plain_loop", rate / loop[0]);
              r.put("ratio_per_runner", rate / loop[0] / n);
              double perCore = ROWS / (load.sandboxCpuMs() / 1000.0);
              r.put("sandbox_rows_per_cpu_second", Math.round(perCore));
              r.put("ratio_per_sandbox_core", perCore / loop[0]);
              r.put("cpu_ms_per_batch_worker_jvm", load.workerCpuMs());
              r.put("cpu_ms_per_batch_sandbox", load.sandboxCpuMs());
              System.out.printf(
                  "pool: %-24s %d runner(s): %,12.0f rows/s   plain loop %,12.0f rows/s"
                      + " (before %,.0f, after %,.0f)   %5.1f%%"
                      + "   CPU ms/batch: worker %.1f, sandbox %.1f%n",
                  f.title(),
                  n,
                  rate,
                  loop[0],
                  before[0],
                  after[0],
                  100 * rate / loop[0],
                  load.workerCpuMs(),
                  load.sandboxCpuMs());
            }
          }
        }
      }
    } finally {
      deleteTree(data);
    }
    addScaling(rows);
    return rows;
  }

  /**
   * The UDF's image, built with the image builder's own recipe for a UDF without packages or
   * imports, with the plain-loop peer's files under {@link #LOOP_DIR} added to the code layer.
   */
  static BuiltImage udfImage(BuildImage images, Runtimes.Runtime runtime, Function f)
      throws Exception {
    UdfDefinition definition = UdfDefinition.fromSpec(udfSpec(f), List.of());
    // The plain-loop peer, loaded by a runner started with KILN_UDF_DIR pointing here.
    Map<String, byte[]> codeFiles = new TreeMap<>(RunnerFiles.udfFiles(definition.spec()));
    RunnerFiles.udfFiles(RuntimeSpec.parse(loopSpec(f)))
        .forEach(
            (path, bytes) ->
                codeFiles.put(LOOP_DIR + path.substring(RunnerFiles.UDF_DIR.length()), bytes));
    return images
        .build(
            new BuildImage.Recipe(
                runtime,
                null,
                definition.key(runtime.digest(), RunnerFiles.version()),
                definition.handler(),
                codeFiles,
                Lock.empty(),
                List.of(),
                List.of()))
        .image();
  }

  /**
   * The plain loop as a UDF in a runner of this sandbox, as {@code flight} measures it: the median
   * and the best of 21 runs, in rows/s. The runner loads the loop UDF from its own directory of the
   * image; it ends before the pool under test starts.
   */
  /** One runner in {@code sandbox} serving the plain-loop UDF of {@code f}. */
  static RunnerPool plainLoopPeer(Sandbox sandbox, Function f, KilnConfig config) throws Exception {
    RunnerLauncher launcher =
        env -> {
          List<String> withLoop = new ArrayList<>(env);
          withLoop.add("KILN_UDF_DIR=" + LOOP_DIR);
          return SandboxRunners.runner(sandbox.exec(RunnerFiles.serveCommand(), withLoop));
        };
    return new StartRunners(config.batchTimeout())
        .start(
            UdfSignature.of(RuntimeSpec.parse(loopSpec(f))),
            launcher,
            1,
            config.sandboxMemoryBytes());
  }

  /** The plain loop's rows/s: the median and the best of 21 runs. */
  static double[] plainLoop(RunnerPool loop, BufferAllocator allocator) throws Exception {
    try (BufferAllocator mine = allocator.newChildAllocator("loop", 0, Long.MAX_VALUE)) {
      return new double[] {loopCall(loop, mine, 21), loopCall(loop, mine, -21)};
    }
  }

  static double loopCall(RunnerPool loop, BufferAllocator allocator, int reps) throws Exception {
    try (IntVector in = new IntVector("arg1", allocator)) {
      in.allocateNew(1);
      in.set(0, reps);
      in.setValueCount(1);
      try (FieldVector out = loop.call(List.of(in), 1, allocator)) {
        return ((Float8Vector) out).get(0);
      }
    }
  }

  /** What one worker-level measurement saw: rows/s, and CPU per batch of the worker and sandbox. */
  record PoolLoad(double rowsPerSecond, double workerCpuMs, double sandboxCpuMs) {}

  static PoolLoad poolLoad(
      RunnerPool pool,
      BufferAllocator allocator,
      Function f,
      int inFlight,
      Duration warmup,
      Duration measure)
      throws Exception {
    callPool(pool, allocator, f, inFlight, warmup, new long[1]);
    long sandboxBefore = sandboxCpuNanos();
    long workerBefore = workerCpuNanos();
    long[] batches = new long[1];
    double rate = callPool(pool, allocator, f, inFlight, measure, batches);
    long workerAfter = workerCpuNanos();
    long sandboxAfter = sandboxCpuNanos();
    return new PoolLoad(
        rate,
        (workerAfter - workerBefore) / 1e6 / batches[0],
        (sandboxAfter - sandboxBefore) / 1e6 / batches[0]);
  }

  /**
   * Keeps {@code inFlight} calls of the pool going for {@code duration} (at least one call each),
   * each thread with its own pre-built input; checks a sample of every result. Returns rows/s of
   * completed calls.
   */
  static double callPool(
      RunnerPool pool,
      BufferAllocator allocator,
      Function f,
      int inFlight,
      Duration duration,
      long[] batches)
      throws Exception {
    return keepCalling(
        allocator,
        f,
        inFlight,
        duration,
        batches,
        (mine, in) -> {
          try (FieldVector out = pool.call(in.getFieldVectors(), ROWS, mine)) {
            if (out.getValueCount() != ROWS) {
              throw new IllegalStateException("result has " + out.getValueCount() + " rows");
            }
            for (int i = 0; i < ROWS; i += 4099) {
              check(f, out, i);
            }
          }
        });
  }
}
