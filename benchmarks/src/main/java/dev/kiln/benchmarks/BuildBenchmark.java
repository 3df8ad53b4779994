package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.google.common.io.MoreFiles;
import com.google.common.io.RecursiveDeleteOption;
import dev.kiln.image.BaseImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageBuilder;
import dev.kiln.image.ImageRequest;
import dev.kiln.image.InstallLayout;
import dev.kiln.image.LayerFile;
import dev.kiln.image.LayerSpec;
import dev.kiln.image.WheelLayers;
import dev.kiln.resolver.IndexConfig;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.LockedPackage;
import dev.kiln.resolver.PackageResolver;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * Image builds with Python packages: Kiln against {@code buildah bud --layers} running a Dockerfile
 * that {@code pip install}s the packages and then copies the code (what Databend's reference
 * control plane does), from the same package index over the same base image, in the same run.
 *
 * <ul>
 *   <li><b>Kiln</b>: {@link PackageResolver#resolve} (empty lock and metadata caches when cold),
 *       {@link PackageResolver#download} of each locked wheel into a work directory keyed by sha256
 *       (as the artifact cache keeps them) and {@link WheelLayers#layerFor} (one layer per wheel),
 *       one wheel after the other on each of the machine's cores, then {@link ImageBuilder#build}
 *       of the wheel layers + a code layer over the default base image.
 *   <li><b>buildah</b> (Debian's package): overlay storage driver, {@code --isolation chroot
 *       --network host}, base pulled from the same {@code docker-archive}. The base image has no
 *       pip, so the Dockerfile copies the newest pip wheel from the mirror and runs pip from it
 *       ({@code python3 pip.whl/pip install --no-cache-dir --no-compile --break-system-packages
 *       --index-url ...}); {@code --no-compile} because Kiln's layers carry no {@code .pyc} either,
 *       so both images hold the same files.
 * </ul>
 *
 * <p>The index is the machine's local PyPI mirror ({@code /opt/pypi}: PEP 503 pages and real cp311
 * manylinux wheels) served over HTTP on loopback by this benchmark; both sides use only that one
 * index.
 *
 * <p>Scenarios (each run starts both sides from scratch, then builds in this order):
 *
 * <ol>
 *   <li><b>5 packages, cold</b>: numpy, pandas, humanize, six, requests (10 wheels with their
 *       dependencies). Cold means empty package, lock and layer caches: a fresh Kiln work directory
 *       and fresh buildah storage. The base image is already imported on both sides (Kiln: one
 *       build without packages; buildah: {@code buildah pull}), as on a server that has been
 *       running; neither is timed.
 *   <li><b>one package added</b> to the built set (tabulate): buildah's pip layer is keyed on the
 *       whole list, Kiln only adds a layer.
 *   <li><b>only the code changed</b>, same 6 packages.
 *   <li><b>30 packages, cold</b> (44 wheels with dependencies, numpy, pandas, scipy, sympy, ...),
 *       both sides fresh again.
 * </ol>
 *
 * <p>Before the timed runs one untimed Kiln pass over the 30 packages reads every wheel once, so
 * both sides find the mirror's files in the page cache and Kiln's JVM is warm, as a running server
 * is.
 *
 * <p>Run: {@code bin/bench build [--runs N] [--mirror /opt/pypi] [--base ARCHIVE] [--gzip-level
 * 0-9]} (gzip Kiln's package layers at this level, {@link WheelLayers#setGzipLevel}; by default
 * they are plain tars, as Kiln keeps them). Prints a table (medians) and writes {@code
 * benchmarks/target/results/build.json}. {@code bin/bench build --byte-code} measures what shipping
 * byte code costs and saves instead ({@link ByteCodeBenchmark}).
 */
public final class BuildBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();

  static final List<String> FIVE = List.of("numpy", "pandas", "humanize", "six", "requests");
  static final String ADDED = "tabulate";
  static final List<String> THIRTY =
      List.of(
          "numpy",
          "pandas",
          "humanize",
          "six",
          "requests",
          "pyyaml",
          "attrs",
          "click",
          "jinja2",
          "packaging",
          "pydantic",
          "tabulate",
          "toolz",
          "sqlalchemy",
          "regex",
          "simplejson",
          "ujson",
          "orjson",
          "msgpack",
          "cachetools",
          "more-itertools",
          "wrapt",
          "decorator",
          "networkx",
          "sympy",
          "tqdm",
          "rich",
          "lxml",
          "pillow",
          "scipy");

  private BuildBenchmark() {}

  public static void main(String[] args) throws Exception {
    if (args.length > 0 && args[0].equals("--byte-code")) {
      ByteCodeBenchmark.main(java.util.Arrays.copyOfRange(args, 1, args.length));
      return;
    }
    int runs = 3;
    int gzipLevel = ImageBuilder.UNCOMPRESSED;
    Path mirror = Path.of("/opt/pypi");
    Path baseArchive =
        Path.of(System.getProperty("user.home"), ".cache/kiln/base/debian-bookworm-python3.tar");
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--runs" -> runs = Integer.parseInt(args[++i]);
        case "--mirror" -> mirror = Path.of(args[++i]);
        case "--base" -> baseArchive = Path.of(args[++i]);
        case "--gzip-level" -> gzipLevel = Integer.parseInt(args[++i]);
        default -> {
          System.err.println(
              "usage: bin/bench build [--runs N] [--mirror DIR] [--base DOCKER_ARCHIVE]"
                  + " [--gzip-level 0-9]");
          System.exit(2);
        }
      }
    }
    Buildah.ensureInstalled();
    Path work = Files.createTempDirectory("kiln-build-bench-");
    MirrorServer server = MirrorServer.start(mirror);
    try {
      URI index = server.uri("simple/");
      TargetEnvironment target = probe(baseArchive, work.resolve("probe"));
      InstallLayout layout = layout(target);
      System.out.printf(
          "index %s (serving %s); base %s: Python %s, site-packages %s%n",
          index, mirror, baseArchive, target.pythonVersion(), layout.purelib());
      Path pip = newestPipWheel(mirror.resolve("files"));

      // Untimed: the mirror's wheels into the page cache, Kiln's JVM warm.
      try (KilnSide warm =
          new KilnSide(work.resolve("warm-up"), index, baseArchive, target, layout, gzipLevel)) {
        warm.warmBase();
        warm.build(THIRTY, "def f(x):\n    return x\n", "kiln/bench:warm-up");
      }
      deleteTree(work.resolve("warm-up"));

      List<Scenario> scenarios =
          List.of(
              new Scenario("5 packages, cold", FIVE),
              new Scenario("one package added", plus(FIVE, ADDED)),
              new Scenario("only the code changed", plus(FIVE, ADDED)),
              new Scenario("30 packages, cold", THIRTY));
      for (int run = 0; run < runs; run++) {
        System.out.printf("run %d of %d%n", run + 1, runs);
        Path dir = work.resolve("run-" + run);
        try (KilnSide kiln =
                new KilnSide(dir.resolve("kiln"), index, baseArchive, target, layout, gzipLevel);
            Buildah buildah = new Buildah(dir.resolve("buildah"), baseArchive, pip, index)) {
          kiln.warmBase();
          measure(scenarios.get(0), kiln, buildah, "def f(x):\n    return x\n", run);
          measure(scenarios.get(1), kiln, buildah, "def f(x):\n    return x\n", run);
          measure(scenarios.get(2), kiln, buildah, "def f(x):\n    return x + 1\n", run);
        }
        deleteTree(dir);
        try (KilnSide kiln =
                new KilnSide(dir.resolve("kiln"), index, baseArchive, target, layout, gzipLevel);
            Buildah buildah = new Buildah(dir.resolve("buildah"), baseArchive, pip, index)) {
          kiln.warmBase();
          measure(scenarios.get(3), kiln, buildah, "def f(x):\n    return x\n", run);
        }
        deleteTree(dir);
      }
      report(scenarios, runs, mirror, baseArchive, pip, gzipLevel);
    } finally {
      server.stop();
      deleteTree(work);
    }
  }

  /** One scenario's timings over all runs. */
  record Scenario(
      String name,
      List<String> packages,
      List<Double> kiln,
      List<Double> buildah,
      List<KilnSide.Timing> breakdown,
      List<Double> buildahCpu,
      int[] wheels) {
    Scenario(String name, List<String> packages) {
      this(
          name,
          packages,
          new ArrayList<>(),
          new ArrayList<>(),
          new ArrayList<>(),
          new ArrayList<>(),
          new int[1]);
    }
  }

  /** Builds the scenario with both sides, alternating which goes first so neither always waits. */
  private static void measure(Scenario s, KilnSide kiln, Buildah buildah, String code, int run)
      throws Exception {
    String tag = "kiln/bench:" + s.packages().size() + "-" + code.hashCode() + "-" + run;
    Buildah.Timing b;
    KilnSide.Timing k;
    if (run % 2 == 0) {
      k = kiln.build(s.packages(), code, tag);
      b = buildah.build(s.packages(), code, tag);
    } else {
      b = buildah.build(s.packages(), code, tag);
      k = kiln.build(s.packages(), code, tag);
    }
    s.kiln().add(k.total());
    s.buildah().add(b.wall());
    s.breakdown().add(k);
    s.buildahCpu().add(b.cpu());
    s.wheels()[0] = k.wheels();
    System.out.printf(
        "  %-22s Kiln %6.2f s (resolve %.2f, wheels %.2f, image %.2f; cpu %.2f s; %d wheels)"
            + "   buildah %6.2f s (cpu %.2f s)%n",
        s.name(),
        k.total(),
        k.resolve(),
        k.layers(),
        k.image(),
        k.cpu(),
        k.wheels(),
        b.wall(),
        b.cpu());
  }

  private static void report(
      List<Scenario> scenarios, int runs, Path mirror, Path baseArchive, Path pip, int gzipLevel)
      throws IOException {
    System.out.println();
    System.out.printf(
        "%-24s %7s %10s %12s %9s %12s %12s%n",
        "scenario", "wheels", "Kiln", "buildah+pip", "ratio", "Kiln cpu", "buildah cpu");
    ObjectNode report = JSON.createObjectNode();
    report.put("runs", runs);
    report.put("mirror", mirror.toString());
    report.put("base", baseArchive.toString());
    report.put("pip", pip.getFileName().toString());
    report.put("kiln_gzip_level", gzipLevel);
    report.put("cores", Runtime.getRuntime().availableProcessors());
    report.put(
        "buildah",
        "buildah --storage-driver overlay bud --layers --isolation chroot --network host");
    ArrayNode out = report.putArray("scenarios");
    for (Scenario s : scenarios) {
      double k = median(s.kiln());
      double b = median(s.buildah());
      double kc = median(s.breakdown().stream().map(KilnSide.Timing::cpu).toList());
      double bc = median(s.buildahCpu());
      System.out.printf(
          "%-24s %7d %8.2f s %10.2f s %8.1fx %10.2f s %10.2f s%n",
          s.name(), s.wheels()[0], k, b, b / k, kc, bc);
      ObjectNode n = out.addObject();
      n.put("scenario", s.name());
      ArrayNode p = n.putArray("packages");
      s.packages().forEach(p::add);
      n.put("wheels", s.wheels()[0]);
      n.put("kiln_median_s", round(k));
      n.put("buildah_median_s", round(b));
      n.put("ratio_buildah_over_kiln", round(b / k));
      ArrayNode kr = n.putArray("kiln_s");
      s.kiln().forEach(v -> kr.add(round(v)));
      ArrayNode br = n.putArray("buildah_s");
      s.buildah().forEach(v -> br.add(round(v)));
      ArrayNode parts = n.putArray("kiln_breakdown_s");
      for (KilnSide.Timing t : s.breakdown()) {
        ObjectNode part = parts.addObject();
        part.put("resolve", round(t.resolve()));
        part.put("download_and_unpack", round(t.layers()));
        part.put("image", round(t.image()));
        part.put("cpu", round(t.cpu()));
      }
      ArrayNode bcs = n.putArray("buildah_cpu_s");
      s.buildahCpu().forEach(v -> bcs.add(round(v)));
    }
    Path file = Path.of("benchmarks/target/results/build.json");
    Files.createDirectories(file.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(file.toFile(), report);
    System.out.println("ratio = buildah / Kiln (medians of " + runs + " runs); wrote " + file);
  }

  /** Kiln's side: resolver, wheel store, wheel layers and image builder in one work directory. */
  static final class KilnSide implements AutoCloseable {
    /** Seconds spent in one build, and in its parts. */
    record Timing(
        double total, double resolve, double layers, double image, double cpu, int wheels) {}

    private final PackageResolver resolver;
    private final WheelLayers wheelLayers;
    private final ImageBuilder images;
    private final Path wheelStore;
    private final TargetEnvironment target;
    private final InstallLayout layout;
    private final ExecutorService pool;

    KilnSide(
        Path dir,
        URI index,
        Path baseArchive,
        TargetEnvironment target,
        InstallLayout layout,
        int gzipLevel)
        throws IOException {
      this.resolver =
          new PackageResolver(
              new IndexConfig(
                  List.of(index), Optional.empty(), Optional.empty(), Duration.ofSeconds(60)),
              dir.resolve("resolver"));
      this.wheelLayers = new WheelLayers(dir.resolve("wheel-layers"));
      this.images =
          new ImageBuilder(BaseImage.parse(baseArchive.toString()), dir.resolve("images"));
      if (gzipLevel != ImageBuilder.UNCOMPRESSED) {
        images.setGzipLevel(gzipLevel);
      }
      wheelLayers.setGzipLevel(gzipLevel);
      this.wheelStore = Files.createDirectories(dir.resolve("wheels"));
      this.target = target;
      this.layout = layout;
      this.pool = Executors.newFixedThreadPool(Runtime.getRuntime().availableProcessors());
    }

    /** Imports the base image into Jib's cache, as a running server already has. */
    void warmBase() throws Exception {
      images.build(request("kiln/bench:base", List.of(), "pass\n"));
    }

    Timing build(List<String> requirements, String code, String name) throws Exception {
      long cpu0 = processCpuNanos();
      long t0 = System.nanoTime();
      Lock lock = resolver.resolve(requirements, target);
      long t1 = System.nanoTime();
      List<Future<LayerSpec>> futures = new ArrayList<>();
      for (LockedPackage pkg : lock.packages()) {
        futures.add(pool.submit(() -> wheelLayers.layerFor(fetch(pkg), pkg.filename(), layout)));
      }
      List<LayerSpec> layers = new ArrayList<>();
      for (Future<LayerSpec> f : futures) {
        try {
          layers.add(f.get());
        } catch (ExecutionException e) {
          throw new IOException("preparing a wheel layer failed: " + e.getCause(), e.getCause());
        }
      }
      long t2 = System.nanoTime();
      BuiltImage image = images.build(request(name, layers, code));
      long t3 = System.nanoTime();
      if (image.layers().size() < layers.size() + 2) {
        throw new IllegalStateException(name + " has too few layers: " + image.layers().size());
      }
      return new Timing(
          seconds(t3 - t0),
          seconds(t1 - t0),
          seconds(t2 - t1),
          seconds(t3 - t2),
          seconds(processCpuNanos() - cpu0),
          lock.packages().size());
    }

    /** The wheel from the store by sha256, downloaded (and verified) on a miss. */
    private Path fetch(LockedPackage pkg) throws Exception {
      Path file = wheelStore.resolve(pkg.sha256()).resolve(pkg.filename());
      if (Files.isRegularFile(file)) {
        return file;
      }
      Files.createDirectories(file.getParent());
      Path temp = Files.createTempFile(file.getParent(), "download-", ".part");
      try {
        try (OutputStream out = Files.newOutputStream(temp)) {
          resolver.download(pkg, out);
        }
        Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE);
      } finally {
        Files.deleteIfExists(temp);
      }
      return file;
    }

    private static ImageRequest request(String name, List<LayerSpec> wheels, String code) {
      List<LayerSpec> layers = new ArrayList<>(wheels);
      layers.add(
          new LayerSpec(
              "code",
              List.of(
                  LayerFile.ofBytes(
                      "/kiln/udf/udf.py", code.getBytes(StandardCharsets.UTF_8), 0644))));
      return new ImageRequest(
          name, layers, List.of("/usr/bin/python3"), List.of(), Map.of(), "/", Map.of());
    }

    @Override
    public void close() {
      pool.shutdownNow();
      images.close();
      resolver.close();
    }
  }

  /**
   * What the base image's python3 says about itself: the base is extracted once (untimed) and
   * {@link TargetEnvironment#probeScript()} runs in it with chroot, as the control plane runs it in
   * a sandbox.
   */
  static TargetEnvironment probe(Path baseArchive, Path dir) throws Exception {
    Path unpacked = Files.createDirectories(dir.resolve("archive"));
    Path rootfs = Files.createDirectories(dir.resolve("rootfs"));
    run(List.of("tar", "-xf", baseArchive.toString(), "-C", unpacked.toString()));
    JsonNode manifest = JSON.readTree(unpacked.resolve("manifest.json").toFile());
    for (JsonNode layer : manifest.get(0).path("Layers")) {
      run(
          List.of(
              "tar", "-xzf", unpacked.resolve(layer.asText()).toString(), "-C", rootfs.toString()));
    }
    List<String> out =
        run(
            List.of(
                "chroot",
                rootfs.toString(),
                "/usr/bin/python3",
                "-c",
                TargetEnvironment.probeScript()));
    deleteTree(dir);
    return TargetEnvironment.fromProbeJson(String.join("\n", out));
  }

  /**
   * The install layout the probe found. Headers go where pip puts them outside a virtualenv, {@code
   * <data>/include/pythonX.Y/<dist>} ({@code sysconfig}'s include is the system's own).
   */
  static InstallLayout layout(TargetEnvironment t) {
    return new InstallLayout(
        t.purelib(),
        t.platlib(),
        t.scripts(),
        t.data(),
        t.data() + "/include/python" + t.pythonMinor(),
        t.interpreter());
  }

  static Path newestPipWheel(Path files) throws IOException {
    try (Stream<Path> s = Files.list(files)) {
      return s.filter(p -> p.getFileName().toString().matches("pip-[0-9.]+-py3-none-any\\.whl"))
          .max((a, b) -> compareVersions(version(a), version(b)))
          .orElseThrow(() -> new IOException("no pip wheel in " + files + "; buildah needs one"));
    }
  }

  private static String version(Path pipWheel) {
    return pipWheel.getFileName().toString().split("-")[1];
  }

  private static int compareVersions(String a, String b) {
    String[] x = a.split("\\.");
    String[] y = b.split("\\.");
    for (int i = 0; i < Math.max(x.length, y.length); i++) {
      int c =
          Integer.compare(
              i < x.length ? Integer.parseInt(x[i]) : 0, i < y.length ? Integer.parseInt(y[i]) : 0);
      if (c != 0) {
        return c;
      }
    }
    return 0;
  }

  private static List<String> plus(List<String> list, String extra) {
    List<String> out = new ArrayList<>(list);
    out.add(extra);
    return List.copyOf(out);
  }

  /** Runs a command; fails with its output if it exits non-zero or runs over 10 minutes. */
  static List<String> run(List<String> command) throws Exception {
    Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
    List<String> lines = new ArrayList<>();
    try (InputStream in = p.getInputStream()) {
      lines.addAll(new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().toList());
    }
    if (!p.waitFor(10, TimeUnit.MINUTES)) {
      p.destroyForcibly();
      throw new IOException(String.join(" ", command) + " did not finish in 10 minutes");
    }
    if (p.exitValue() != 0) {
      throw new IOException(
          String.join(" ", command.subList(0, Math.min(command.size(), 8)))
              + " failed ("
              + p.exitValue()
              + "):\n"
              + String.join("\n", lines.subList(Math.max(0, lines.size() - 30), lines.size())));
    }
    return lines;
  }

  private static long processCpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean)
            java.lang.management.ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  static double seconds(long nanos) {
    return nanos / 1e9;
  }

  static double median(List<Double> values) {
    List<Double> sorted = new ArrayList<>(values);
    Collections.sort(sorted);
    int n = sorted.size();
    return n % 2 == 1 ? sorted.get(n / 2) : (sorted.get(n / 2 - 1) + sorted.get(n / 2)) / 2;
  }

  private static double round(double v) {
    return Math.round(v * 1000) / 1000.0;
  }

  static void deleteTree(Path dir) throws IOException {
    if (Files.exists(dir)) {
      MoreFiles.deleteRecursively(dir, RecursiveDeleteOption.ALLOW_INSECURE);
    }
  }
}
