package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Byte code compiled by the real base image's Python and shipped in layers: the base's python3
 * imports the packages from the shipped {@code .pyc} files without compiling them. The host here
 * runs an image in a chroot of its extracted layers (the control plane's host is a gVisor sandbox;
 * this module does not know sandboxes), which needs root, as the provisioner's tests do.
 */
class ByteCodeIT {
  private static final Path MIRROR = Path.of("/opt/pypi/files");
  private static final String SITE = "/usr/local/lib/python3.11/dist-packages/";

  @TempDir Path tmp;
  private final ExecutorService executor = Executors.newFixedThreadPool(2);

  @AfterEach
  void stop() {
    executor.shutdownNow();
  }

  @Test
  void packagesShipByteCodeThatTheBasesPythonUsesWithoutCompiling() throws Exception {
    ChrootHost host = new ChrootHost(tmp.resolve("roots"));
    RunnerLayer runner =
        new RunnerLayer(
            Map.of("/kiln/runner/runner.py", "print('runner')\n".getBytes(StandardCharsets.UTF_8)),
            List.of("/usr/bin/python3", "/kiln/runner/runner.py"),
            Map.of("PYTHONDONTWRITEBYTECODE", "1"),
            "0".repeat(64));
    BaseImage base = BaseImage.parse(TestImages.baseArchive().toString());
    try (ImageBuilder images = new ImageBuilder(base, tmp.resolve("images"))) {
      Runtimes.Runtime runtime = new Runtimes.Runtime("default", base, base.digest(), images);
      BaseFacts bases = new BaseFacts(runner, host, tmp.resolve("runtimes"));
      TargetEnvironment python = bases.python(runtime);
      WheelLayers wheels = new WheelLayers(tmp.resolve("wheel-layers"));
      BuildImage build = new BuildImage(wheels, runner, executor);

      // The first build does not wait for the byte code: it is compiled after, in the background,
      // in one sandbox (two wheels to compile; six is too small to be worth it).
      BuildImage.UdfImage first = build.build(recipe(runtime, python, "first", bases));
      assertThat(build.awaitByteCode(Duration.ofMinutes(2))).isTrue();
      assertThat(host.runs.get()).as("the probe, then the compile").isEqualTo(2);
      int baseLayers = bases.runnerImage(runtime).layers().size() - 1;
      assertThat(first.image().layers())
          .as("base, urllib3, idna, six, runner, code")
          .hasSize(baseLayers + 5);
      BuildImage.UdfImage withByteCode = build.build(recipe(runtime, python, "first", bases));
      BuiltImage image = withByteCode.image();
      assertThat(withByteCode.key()).isNotEqualTo(first.key());
      assertThat(image.layers())
          .as("base, urllib3 and its byte code, idna and its byte code, six, runner, code")
          .hasSize(baseLayers + 7);

      // The base's python3, never writing byte code, finds it valid and uses it.
      String verbose =
          host.runAll(
              image,
              List.of(
                  "python3",
                  "-v",
                  "-c",
                  "import idna, urllib3, six; print(idna.encode('b\\u00fccher.de'), six.PY3)"));
      assertThat(verbose).contains("b'xn--bcher-kva.de' True");
      assertThat(verbose).doesNotContain("six.cpython-311.pyc");
      for (String module : List.of("idna/__init__", "idna/core", "urllib3/__init__")) {
        String source = SITE + module + ".py";
        int slash = source.lastIndexOf('/');
        String pyc =
            source.substring(0, slash)
                + "/__pycache__"
                + source.substring(slash, source.length() - 3)
                + ".cpython-311.pyc";
        assertThat(verbose).contains("# " + pyc + " matches " + source);
      }
      // Byte for byte what py_compile (compileall) writes with unchecked hashes.
      String same =
          host.runAll(
              image,
              List.of(
                  "python3",
                  "-c",
                  "import importlib.util as u, py_compile, sys\n"
                      + "for m in ('idna', 'idna.core', 'urllib3'):\n"
                      + "    src = u.find_spec(m).origin\n"
                      + "    py_compile.compile(src, cfile='/tmp/x.pyc', doraise=True,"
                      + " invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
                      + "    shipped = open(u.cache_from_source(src), 'rb').read()\n"
                      + "    print(m, shipped == open('/tmp/x.pyc', 'rb').read())\n"));
      assertThat(same.lines()).containsExactly("idna True", "idna.core True", "urllib3 True");

      // Another UDF with the same packages reuses the byte code; so does a restart.
      build.build(recipe(runtime, python, "second", bases));
      new BuildImage(new WheelLayers(tmp.resolve("wheel-layers")), runner, executor)
          .build(recipe(runtime, python, "third", bases));
      assertThat(host.runs.get()).as("no compile again").isEqualTo(2);

      // Compiling is deterministic: the same layers from a fresh work directory.
      WheelLayers fresh = new WheelLayers(tmp.resolve("fresh"));
      List<LayerSpec> sources = new ArrayList<>();
      List<FetchInputs.Fetched> files = recipe(runtime, python, "first", bases).wheels();
      for (FetchInputs.Fetched wheel : files) {
        sources.add(fresh.layerFor(wheel.file(), wheel.name(), InstallLayout.of(python)));
      }
      PycLayers pyc = new PycLayers(fresh);
      // One sandbox per wheel to compile when there are two cores, one for both on one core.
      int compiles = Math.min(2, Runtime.getRuntime().availableProcessors());
      pyc.compile(
          files, sources, python, (ls, argv) -> bases.compile(runtime, ls, argv, false), compiles);
      assertThat(host.runs.get()).isEqualTo(2 + compiles);
      List<PycLayers.Cached> byteCode = pyc.cached(files, python);
      assertThat(byteCode.get(0).layer().digest())
          .isEqualTo(image.layers().get(baseLayers + 1).digest());
      assertThat(byteCode.get(1).layer().digest())
          .isEqualTo(image.layers().get(baseLayers + 3).digest());
      assertThat(byteCode.get(2).known()).as("six: none, and known").isTrue();
      assertThat(byteCode.get(2).layer()).isNull();

      // Without the base's facts the image has no byte code, and another key.
      BuildImage.UdfImage plain = build.build(recipe(runtime, python, "first", null));
      assertThat(plain.image().layers()).hasSize(image.layers().size() - 2);
      assertThat(plain.key()).isNotEqualTo(withByteCode.key()).isEqualTo(first.key());
    }
  }

  private BuildImage.Recipe recipe(
      Runtimes.Runtime runtime, TargetEnvironment python, String udf, BaseFacts bases)
      throws IOException {
    List<FetchInputs.Fetched> files = new ArrayList<>();
    for (Path wheel :
        List.of(
            mirrorWheel("urllib3-", "-py3-none-any.whl"),
            mirrorWheel("idna-", "-py3-none-any.whl"),
            mirrorWheel("six-", "-py2.py3-none-any.whl"))) {
      try (InputStream in = Files.newInputStream(wheel)) {
        files.add(new FetchInputs.Fetched(wheel.getFileName().toString(), Digest.of(in), wheel));
      }
    }
    return TestWheels.udfRecipe(runtime, python, files, udf, bases);
  }

  private static Path mirrorWheel(String prefix, String suffix) throws IOException {
    try (Stream<Path> files = Files.list(MIRROR)) {
      return files
          .filter(
              p ->
                  p.getFileName().toString().startsWith(prefix)
                      && p.getFileName().toString().endsWith(suffix))
          .sorted()
          .reduce((a, b) -> b)
          .orElseThrow(() -> new AssertionError("no " + prefix + "*" + suffix + " in " + MIRROR));
    }
  }

  /** Runs images in a chroot of their layers, extracted afresh for every run. */
  static final class ChrootHost implements ImageHost {
    final AtomicInteger runs = new AtomicInteger();
    private final Path dir;

    ChrootHost(Path dir) {
      this.dir = dir;
    }

    @Override
    public void prepare(BuiltImage image) {}

    @Override
    public String run(BuiltImage image, List<String> argv)
        throws IOException, InterruptedException {
      runs.incrementAndGet();
      return exec(image, argv, false);
    }

    /** Runs without counting, and returns stdout and stderr together. */
    String runAll(BuiltImage image, List<String> argv) throws IOException, InterruptedException {
      return exec(image, argv, true);
    }

    private String exec(BuiltImage image, List<String> argv, boolean withStderr)
        throws IOException, InterruptedException {
      Path root = Files.createTempDirectory(Files.createDirectories(dir), "root-");
      try {
        for (ImageLayer layer : image.layers()) {
          command(List.of("tar", "-xf", layer.blob().toString(), "-C", root.toString()), false);
        }
        List<String> command = new ArrayList<>(List.of("chroot", root.toString(), "env", "-i"));
        command.add("PATH=/usr/local/bin:/usr/bin:/bin");
        command.addAll(image.env());
        command.addAll(argv);
        return command(command, withStderr);
      } finally {
        command(List.of("rm", "-rf", root.toString()), false);
      }
    }

    private static String command(List<String> argv, boolean withStderr)
        throws IOException, InterruptedException {
      Process p = new ProcessBuilder(argv).redirectErrorStream(withStderr).start();
      p.getOutputStream().close();
      CompletableFuture<byte[]> err =
          CompletableFuture.supplyAsync(
              () -> {
                try {
                  return p.getErrorStream().readAllBytes();
                } catch (IOException e) {
                  return new byte[0];
                }
              });
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
      if (!p.waitFor(2, TimeUnit.MINUTES) || p.exitValue() != 0) {
        p.destroyForcibly();
        throw new IOException(
            argv.get(0) + " failed: " + out + new String(err.join(), StandardCharsets.UTF_8));
      }
      return out;
    }
  }
}
