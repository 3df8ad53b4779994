package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.KilnException;
import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.controlplane.KilnConfig;
import dev.kiln.controlplane.SandboxRunners;
import dev.kiln.definition.ContentKey;
import dev.kiln.image.BaseFacts;
import dev.kiln.image.BuildImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageHost;
import dev.kiln.image.Runtimes;
import dev.kiln.image.WheelLayers;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.RunscProvisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.IndexConfig;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.LockedPackage;
import dev.kiln.resolver.PackageResolver;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;

/**
 * What shipping byte code costs a build and saves a runner start, with the five packages of {@link
 * BuildBenchmark} (numpy, pandas, humanize, six, requests) over the default base, in gVisor.
 *
 * <ul>
 *   <li><b>build</b>: the UDF image from cold wheel layers, without byte code and with the base's
 *       facts (which builds it without byte code too and compiles in the background, in a sandbox
 *       of the base's python3); how long until the byte code is ready; and the build of a second
 *       UDF with the same packages, which ships it.
 *   <li><b>import</b>: in a sandbox of each image, {@code python3 -c 'import numpy, pandas'} as a
 *       runner runs (PYTHONDONTWRITEBYTECODE=1, so nothing is written between runs): wall time from
 *       exec to exit, and the import time Python measures itself. Peer: {@code python3 -c pass} in
 *       the same sandbox.
 * </ul>
 *
 * <p>Run: {@code bin/bench build --byte-code [--runs N] [--mirror /opt/pypi]}. Writes {@code
 * benchmarks/target/results/byte-code.json}.
 */
final class ByteCodeBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Limits PROBE_LIMITS = new Limits(256L << 20, 1.0);
  private static final String IMPORT =
      "import time; t = time.perf_counter(); import numpy, pandas;"
          + " print(round((time.perf_counter() - t) * 1000))";

  private ByteCodeBenchmark() {}

  static void main(String[] args) throws Exception {
    int runs = 5;
    Path mirror = Path.of("/opt/pypi");
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--runs" -> runs = Integer.parseInt(args[++i]);
        case "--mirror" -> mirror = Path.of(args[++i]);
        default -> throw new IllegalArgumentException("unknown argument " + args[i]);
      }
    }
    Path data = Files.createTempDirectory("kiln-bench-pyc-");
    MirrorServer server = MirrorServer.start(mirror);
    KilnConfig defaults = KilnConfig.builder().build();
    ObjectNode report = JSON.createObjectNode();
    try (Runtimes runtimes =
            Runtimes.open(Map.of(), defaults.baseImage(), "", data.resolve("images"));
        ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor();
        RunscProvisioner provisioner =
            RunscProvisioner.builder()
                .runsc(defaults.runsc())
                .platform(defaults.runscPlatform())
                .workDir(data.resolve("provisioner"))
                .build();
        PackageResolver resolver =
            new PackageResolver(
                new IndexConfig(
                    List.of(server.uri("simple/")),
                    Optional.empty(),
                    Optional.empty(),
                    Duration.ofSeconds(60)),
                data.resolve("resolver"))) {
      PlaceSandbox sandboxes = new PlaceSandbox(provisioner);
      ImageHost host = host(sandboxes);
      Runtimes.Runtime runtime = runtimes.all().get(0);
      BaseFacts bases = new BaseFacts(SandboxRunners.runnerLayer(), host, data.resolve("runtimes"));
      bases.runnerImage(runtime); // the base's layers extracted, as on a running server
      TargetEnvironment python = bases.python(runtime);
      Lock lock = resolver.resolve(BuildBenchmark.FIVE, python);
      List<FetchInputs.Fetched> wheels = download(resolver, lock, data.resolve("wheels"));

      long t0 = System.nanoTime();
      BuiltImage plain =
          new BuildImage(
                  new WheelLayers(data.resolve("plain")), SandboxRunners.runnerLayer(), executor)
              .build(recipe(runtime, python, lock, wheels, null, "plain"))
              .image();
      long t1 = System.nanoTime();
      BuildImage builds =
          new BuildImage(
              new WheelLayers(data.resolve("pyc")), SandboxRunners.runnerLayer(), executor);
      BuiltImage first =
          builds.build(recipe(runtime, python, lock, wheels, bases, "first")).image();
      long t2 = System.nanoTime();
      // The compile runs in the background: a second UDF's image ships the byte code once it is
      // ready (each try is a build that finds its image or builds it).
      BuiltImage pyc;
      long t3;
      long t4;
      long deadline = t2 + Duration.ofMinutes(3).toNanos();
      while (true) {
        t3 = System.nanoTime();
        pyc = builds.build(recipe(runtime, python, lock, wheels, bases, "second")).image();
        t4 = System.nanoTime();
        if (pyc.layers().size() > first.layers().size() || t4 > deadline) {
          break;
        }
        Thread.sleep(50);
      }
      if (pyc.layers().size() == first.layers().size()) {
        throw new IOException("the byte code was not ready within 3 minutes (see the log)");
      }
      System.out.printf(
          "build, cold wheel layers: without byte code %.2f s, with the base's facts %.2f s (%d"
              + " wheels, built without byte code); byte code ready %.2f s after; a second UDF's"
              + " build with it %.2f s%n",
          (t1 - t0) / 1e9, (t2 - t1) / 1e9, wheels.size(), (t3 - t2) / 1e9, (t4 - t3) / 1e9);
      report.put("build_without_pyc_s", (t1 - t0) / 1e9);
      report.put("first_build_with_bases_s", (t2 - t1) / 1e9);
      report.put("pyc_ready_after_s", (t3 - t2) / 1e9);
      report.put("second_build_with_pyc_s", (t4 - t3) / 1e9);

      for (var image : List.of(Map.entry("without", plain), Map.entry("with", pyc))) {
        SandboxSpec spec =
            new SandboxSpec(
                "pyc-" + image.getKey(),
                SandboxRunners.sandboxImage(image.getValue()),
                new Limits(defaults.sandboxMemoryBytes(), defaults.sandboxCpus()),
                List.of());
        try (Sandbox sandbox = sandboxes.place(spec)) {
          List<Double> walls = new ArrayList<>();
          List<Double> imports = new ArrayList<>();
          List<Double> bare = new ArrayList<>();
          for (int i = 0; i < runs + 1; i++) {
            long s0 = System.nanoTime();
            String out = exec(sandbox, List.of("python3", "-c", IMPORT));
            long s1 = System.nanoTime();
            exec(sandbox, List.of("python3", "-c", "pass"));
            long s2 = System.nanoTime();
            if (i > 0) { // the first run reads the files into the page cache
              walls.add((s1 - s0) / 1e6);
              imports.add(Double.parseDouble(out.strip()));
              bare.add((s2 - s1) / 1e6);
            }
          }
          System.out.printf(
              "%s byte code: exec to exit of 'import numpy, pandas' %.0f ms (import itself %.0f"
                  + " ms); 'python3 -c pass' %.0f ms (medians of %d)%n",
              image.getKey(),
              BuildBenchmark.median(walls),
              BuildBenchmark.median(imports),
              BuildBenchmark.median(bare),
              runs);
          ObjectNode n = report.putObject(image.getKey() + "_pyc");
          n.put("import_numpy_pandas_exec_ms", BuildBenchmark.median(walls));
          n.put("import_numpy_pandas_in_python_ms", BuildBenchmark.median(imports));
          n.put("python_pass_exec_ms", BuildBenchmark.median(bare));
        }
      }
    } finally {
      server.stop();
      BuildBenchmark.deleteTree(data);
    }
    Path file = Path.of("benchmarks/target/results/byte-code.json");
    Files.createDirectories(file.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(file.toFile(), report);
  }

  private static String exec(Sandbox sandbox, List<String> argv)
      throws IOException, InterruptedException {
    try (SandboxProcess p = sandbox.exec(argv, List.of())) {
      p.stdin().close();
      String out = new String(p.stdout().readAllBytes(), StandardCharsets.UTF_8);
      int status = p.exited().join();
      if (status != 0) {
        throw new IOException(
            argv + " exited with " + status + ": " + new String(p.stderr().readAllBytes()));
      }
      return out;
    }
  }

  private static BuildImage.Recipe recipe(
      Runtimes.Runtime runtime,
      TargetEnvironment python,
      Lock lock,
      List<FetchInputs.Fetched> wheels,
      BaseFacts bases,
      String udf) {
    return new BuildImage.Recipe(
        runtime,
        python,
        ContentKey.ofBytes(Digest.newSha256().digest(udf.getBytes(StandardCharsets.UTF_8))),
        "f",
        Map.of(
            "/kiln/udf/udf.py",
            ("def f(x):\n    return x  # " + udf + "\n").getBytes(StandardCharsets.UTF_8)),
        lock,
        wheels,
        List.of(),
        bases);
  }

  private static List<FetchInputs.Fetched> download(PackageResolver resolver, Lock lock, Path dir)
      throws IOException, KilnException, InterruptedException {
    List<FetchInputs.Fetched> out = new ArrayList<>();
    for (LockedPackage pkg : lock.packages()) {
      Path file = Files.createDirectories(dir.resolve(pkg.sha256())).resolve(pkg.filename());
      try (OutputStream o = Files.newOutputStream(file)) {
        resolver.download(pkg, o);
      }
      out.add(
          new FetchInputs.Fetched(pkg.filename(), Digest.parse("sha256:" + pkg.sha256()), file));
    }
    return out;
  }

  /** The provisioner as the image builder's host, as the control plane wires it. */
  private static ImageHost host(PlaceSandbox sandboxes) {
    return new ImageHost() {
      @Override
      public void prepare(BuiltImage image) throws IOException, InterruptedException {
        sandboxes.prepare(SandboxRunners.sandboxImage(image));
      }

      @Override
      public String run(BuiltImage image, List<String> argv)
          throws IOException, InterruptedException {
        return sandboxes.runOnce(
            new SandboxSpec("probe", SandboxRunners.sandboxImage(image), PROBE_LIMITS, List.of()),
            argv,
            Duration.ofSeconds(30));
      }

      @Override
      public String runInBackground(BuiltImage image, List<String> argv)
          throws IOException, InterruptedException {
        return sandboxes.runOnce(
            new SandboxSpec(
                    "background", SandboxRunners.sandboxImage(image), PROBE_LIMITS, List.of())
                .inBackground(),
            argv,
            Duration.ofMinutes(5));
      }
    };
  }
}
