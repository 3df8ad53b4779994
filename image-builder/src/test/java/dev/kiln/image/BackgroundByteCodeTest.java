package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Byte code never delays a build: the first image with new packages is built without it while the
 * compile runs in the background (here a host that blocks until the test lets it go), and a later
 * build ships it. The base's Python is played by the test, as in {@link PycLayersTest}.
 */
class BackgroundByteCodeTest {
  private static final Duration WAIT = Duration.ofSeconds(30);

  @TempDir Path tmp;
  private final ExecutorService executor = Executors.newFixedThreadPool(2);
  private BaseImage base;

  @BeforeEach
  void tinyBase() throws Exception {
    base =
        BaseImage.parse(
            TestImages.tinyBaseArchive(
                    tmp.resolve("base/tiny.tar"),
                    Map.of("usr/bin/python3", "#!/bin/sh\necho python\n"),
                    Map.of("dev.kiln.python.version", "3.11.2", "dev.kiln.base", "tiny"))
                .toString());
  }

  @AfterEach
  void stop() {
    executor.shutdownNow();
  }

  /** Compiles as the base's Python would, once the test releases it; fails as often as told. */
  private static final class BlockingHost implements ImageHost {
    final CountDownLatch started = new CountDownLatch(1);
    final CountDownLatch release = new CountDownLatch(1);
    final AtomicInteger compiles = new AtomicInteger();
    final AtomicInteger inBackground = new AtomicInteger();
    final AtomicInteger failuresLeft = new AtomicInteger();

    @Override
    public void prepare(BuiltImage image) {}

    @Override
    public String run(BuiltImage image, List<String> argv) throws IOException {
      throw new IOException("only background runs are expected here");
    }

    @Override
    public String runInBackground(BuiltImage image, List<String> argv)
        throws IOException, InterruptedException {
      inBackground.incrementAndGet();
      started.countDown();
      if (!release.await(WAIT.toSeconds(), TimeUnit.SECONDS)) {
        throw new IOException("the test never released the compile");
      }
      compiles.incrementAndGet();
      if (failuresLeft.getAndDecrement() > 0) {
        throw new IOException("the sandbox could not start");
      }
      return PycLayersTest.FakePython.output(argv);
    }
  }

  @Test
  void theFirstBuildDoesNotWaitForTheCompileAndALaterBuildShipsTheByteCode() throws Exception {
    BlockingHost host = new BlockingHost();
    try (ImageBuilder images = new ImageBuilder(base, tmp.resolve("images"))) {
      Runtimes.Runtime runtime = new Runtimes.Runtime("default", base, base.digest(), images);
      RunnerLayer runner = runner();
      BaseFacts bases = new BaseFacts(runner, host, tmp.resolve("runtimes"));
      WheelLayers wheels = new WheelLayers(tmp.resolve("wheel-layers"));
      BuildImage build = new BuildImage(wheels, runner, executor, null, 0);
      List<PycLayersTest.Wheel> built = wheels(wheels);
      List<FetchInputs.Fetched> files = built.stream().map(PycLayersTest.Wheel::file).toList();

      // Built while the compile is blocked: no byte code, the key of an image without it.
      BuildImage.UdfImage first = build.build(recipe(runtime, files, "one", bases));
      assertThat(host.started.await(WAIT.toSeconds(), TimeUnit.SECONDS))
          .as("the compile started after the build")
          .isTrue();
      assertThat(host.compiles).hasValue(0);
      BuildImage.UdfImage plain = build.build(recipe(runtime, files, "one", null));
      assertThat(first.key())
          .as("the same image as one built without the base's facts")
          .isEqualTo(plain.key());
      assertThat(layers(first)).isEqualTo(layers(plain));
      assertThat(byteCodeLayers(wheels, files)).containsOnlyNulls();
      // Another build meanwhile does not wait either, nor ask for a second compile.
      BuildImage.UdfImage two = build.build(recipe(runtime, files, "two", bases));
      assertThat(layers(two)).hasSameSizeAs(layers(first));

      host.release.countDown();
      assertThat(build.awaitByteCode(WAIT)).isTrue();
      assertThat(host.compiles).hasValue(1);
      assertThat(host.inBackground).as("one sandbox, in the background").hasValue(1);

      // Later builds ship it: a new UDF, the first UDF again (another image: another key), and
      // the same after a restart, without compiling again.
      List<Digest> byteCode = byteCodeLayers(wheels, files);
      assertThat(byteCode).doesNotContainNull();
      BuildImage.UdfImage later = build.build(recipe(runtime, files, "three", bases));
      assertThat(layers(later))
          .as("each wheel's layer, then its byte code")
          .containsSubsequence(
              built.get(0).layer().blob().digest(),
              byteCode.get(0),
              built.get(1).layer().blob().digest(),
              byteCode.get(1));
      BuildImage.UdfImage again = build.build(recipe(runtime, files, "one", bases));
      assertThat(again.key()).isNotEqualTo(first.key());
      assertThat(again.image().layers()).hasSize(first.image().layers().size() + 2);
      BuildImage restarted =
          new BuildImage(new WheelLayers(tmp.resolve("wheel-layers")), runner, executor, null, 0);
      assertThat(restarted.build(recipe(runtime, files, "one", bases)).key())
          .isEqualTo(again.key());
      assertThat(restarted.awaitByteCode(WAIT)).isTrue();
      assertThat(build.awaitByteCode(WAIT)).isTrue();
      assertThat(host.compiles).as("compiled once").hasValue(1);
    }
  }

  @Test
  void aFailedCompileIsNoBuildsErrorAndALaterBuildTriesAgain() throws Exception {
    BlockingHost host = new BlockingHost();
    host.failuresLeft.set(1);
    host.release.countDown();
    try (ImageBuilder images = new ImageBuilder(base, tmp.resolve("images"))) {
      Runtimes.Runtime runtime = new Runtimes.Runtime("default", base, base.digest(), images);
      RunnerLayer runner = runner();
      BaseFacts bases = new BaseFacts(runner, host, tmp.resolve("runtimes"));
      WheelLayers wheels = new WheelLayers(tmp.resolve("wheel-layers"));
      BuildImage build = new BuildImage(wheels, runner, executor, null, 0);
      List<PycLayersTest.Wheel> built = wheels(wheels);
      List<FetchInputs.Fetched> files = built.stream().map(PycLayersTest.Wheel::file).toList();

      BuildImage.UdfImage first = build.build(recipe(runtime, files, "one", bases));
      assertThat(build.awaitByteCode(WAIT)).isTrue();
      assertThat(host.compiles).hasValue(1);
      assertThat(layers(build.build(recipe(runtime, files, "one", bases))))
          .as("still none, and the build does not fail")
          .isEqualTo(layers(first));

      assertThat(build.awaitByteCode(WAIT)).isTrue();
      assertThat(host.compiles).as("asked again by the later build").hasValue(2);
      BuildImage.UdfImage later = build.build(recipe(runtime, files, "one", bases));
      assertThat(later.image().layers()).hasSize(first.image().layers().size() + 2);
    }
  }

  private static List<Digest> layers(BuildImage.UdfImage image) {
    return image.image().layers().stream().map(ImageLayer::digest).toList();
  }

  /** The digests of the wheels' byte-code layers, as the cache has them now. */
  private static List<Digest> byteCodeLayers(WheelLayers wheels, List<FetchInputs.Fetched> files) {
    return new PycLayers(wheels, 0)
        .cached(files, PycLayersTest.PYTHON).stream()
            .map(c -> c.layer() == null ? null : c.layer().digest())
            .toList();
  }

  private static RunnerLayer runner() {
    return new RunnerLayer(
        Map.of("/kiln/runner/runner.py", "print('runner')\n".getBytes(StandardCharsets.UTF_8)),
        List.of("/usr/bin/python3", "/kiln/runner/runner.py"),
        Map.of("PYTHONDONTWRITEBYTECODE", "1"),
        "0".repeat(64));
  }

  private List<PycLayersTest.Wheel> wheels(WheelLayers wheels) throws Exception {
    List<PycLayersTest.Wheel> out = new ArrayList<>();
    for (String name : List.of("alpha", "beta")) {
      out.add(PycLayersTest.wheel(wheels, name, tmp.resolve("wheels")));
    }
    return out;
  }

  private static BuildImage.Recipe recipe(
      Runtimes.Runtime runtime, List<FetchInputs.Fetched> files, String udf, BaseFacts bases) {
    return TestWheels.udfRecipe(runtime, PycLayersTest.PYTHON, files, udf, bases);
  }
}
