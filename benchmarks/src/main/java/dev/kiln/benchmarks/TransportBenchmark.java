package dev.kiln.benchmarks;

import static dev.kiln.benchmarks.ThroughputBenchmark.Function;
import static dev.kiln.benchmarks.ThroughputBenchmark.ROWS;
import static dev.kiln.benchmarks.ThroughputBenchmark.udfSpec;
import static dev.kiln.benchmarks.ThroughputBenchmark.workerCpuNanos;

import dev.kiln.definition.RuntimeSpec;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerLauncher;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.RunnerProcess;
import dev.kiln.worker.TcpRunnerLauncher;
import dev.kiln.worker.UdfSignature;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * The runner pool's two transports side by side: runners over pipes (stdin/stdout, as in a local
 * sandbox) against runners over TCP loopback connections to a runner listener ({@code
 * kiln_runner.py listen}, as in a sandbox pod), the same UDF, the same pool settings, the same
 * pre-built 65,536-row batches, alternating repetitions in one run. Both run as host processes (no
 * gVisor: the sandbox would cost both alike, and a sandbox here has no network to listen on), so
 * the difference is the transport's.
 *
 * <p>Run: {@code bin/bench transport [seconds per repetition, default 8] [--reps 3] [--runners 2]
 * [--in-flight 4]}. Prints rows/s and the worker's CPU per batch for each function and transport.
 */
final class TransportBenchmark {
  private TransportBenchmark() {}

  public static void main(String[] args) throws Exception {
    Duration measure = Duration.ofSeconds(8);
    int reps = 3;
    int runners = 2;
    int inFlight = 4;
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--reps" -> reps = Integer.parseInt(args[++i]);
        case "--runners" -> runners = Integer.parseInt(args[++i]);
        case "--in-flight" -> inFlight = Integer.parseInt(args[++i]);
        default -> measure = Duration.ofSeconds(Long.parseLong(args[i]));
      }
    }
    Path root = Files.createTempDirectory("kiln-bench-transport-");
    System.out.printf(
        "Runner transports, host processes, %d runners, %d calls in flight, %d-row batches,"
            + " medians of %d alternating runs of %d s%n%n",
        runners, inFlight, ROWS, reps, measure.toSeconds());
    System.out.println(
        "| function | transport | rows/s | worker CPU per batch | runs (rows/s) |\n|---|---|---|---|---|");
    try (BufferAllocator allocator = new RootAllocator()) {
      for (Function f : Function.values()) {
        RuntimeSpec spec = RuntimeSpec.parse(udfSpec(f));
        Path files = root.resolve(f.handler);
        write(files, RunnerFiles.runtimeFiles());
        write(files, RunnerFiles.udfFiles(spec));
        Process listener = listen(files);
        try {
          InetSocketAddress address = TcpRunnerLauncher.listening(listener);
          RunnerPool.Options options =
              new RunnerPool.Options(runners, Duration.ofSeconds(60), Duration.ofSeconds(60), 50);
          RunnerPool pipes = RunnerPool.start(UdfSignature.of(spec), pipeLauncher(files), options);
          RunnerPool tcp =
              RunnerPool.start(
                  UdfSignature.of(spec),
                  new TcpRunnerLauncher(address, Duration.ofSeconds(5)),
                  options);
          try {
            double[][] rates = new double[2][reps];
            double[][] cpu = new double[2][reps];
            RunnerPool[] pools = {pipes, tcp};
            for (RunnerPool p : pools) { // warm-up: the JIT, every runner busy once
              PoolThroughput.callPool(
                  p, allocator, f, inFlight, Duration.ofSeconds(3), new long[1]);
            }
            for (int r = 0; r < reps; r++) {
              for (int t = 0; t < 2; t++) {
                long[] batches = new long[1];
                long before = workerCpuNanos();
                rates[t][r] =
                    PoolThroughput.callPool(pools[t], allocator, f, inFlight, measure, batches);
                cpu[t][r] = (workerCpuNanos() - before) / 1e6 / batches[0];
              }
            }
            String[] names = {"pipes", "TCP (loopback)"};
            for (int t = 0; t < 2; t++) {
              System.out.printf(
                  "| `%s` | %s | %,.0f | %.2f ms | %s |%n",
                  f.title(),
                  names[t],
                  FastClientThroughput.median(rates[t]),
                  FastClientThroughput.median(cpu[t]),
                  Arrays.toString(Arrays.stream(rates[t]).mapToLong(Math::round).toArray()));
            }
          } finally {
            pipes.close();
            tcp.close();
          }
        } finally {
          listener.destroyForcibly();
        }
      }
    } finally {
      ThroughputBenchmark.deleteTree(root);
    }
  }

  private static void write(Path root, Map<String, byte[]> files) throws IOException {
    for (Map.Entry<String, byte[]> file : files.entrySet()) {
      Path target = root.resolve(file.getKey().substring(1));
      Files.createDirectories(target.getParent());
      Files.write(target, file.getValue());
    }
  }

  /** The command with the runner's path under {@code root}, and its environment there. */
  private static ProcessBuilder process(Path root, List<String> command) {
    List<String> c = new ArrayList<>(command);
    c.set(1, root.resolve(c.get(1).substring(1)).toString());
    ProcessBuilder b = new ProcessBuilder(c);
    b.environment().putAll(RunnerFiles.environment());
    b.environment().put("KILN_UDF_DIR", root.resolve(RunnerFiles.UDF_DIR.substring(1)).toString());
    return b;
  }

  private static Process listen(Path root) throws IOException {
    return process(root, RunnerFiles.listenCommand("127.0.0.1:0"))
        .redirectError(ProcessBuilder.Redirect.INHERIT)
        .start();
  }

  /** Runners as host processes over pipes. */
  private static RunnerLauncher pipeLauncher(Path root) {
    return env -> {
      ProcessBuilder b = process(root, RunnerFiles.serveCommand());
      for (String e : env) {
        int eq = e.indexOf('=');
        b.environment().put(e.substring(0, eq), e.substring(eq + 1));
      }
      return RunnerProcess.of(b.start());
    };
  }
}
