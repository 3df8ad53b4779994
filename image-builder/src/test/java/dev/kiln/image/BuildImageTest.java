package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.definition.ContentKey;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.LockedPackage;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.io.InputStream;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A UDF's image and its package set's image over a tiny docker-save base: the wheel layer is
 * shared, the packages image holds nothing of the UDF, and each wheel layer reaches the host as
 * soon as it is built.
 */
class BuildImageTest {
  @TempDir Path tmp;

  private static final TargetEnvironment PYTHON = TestWheels.python(TestWheels.DEBIAN);

  @Test
  void wheelLayersReachTheHostAsBuiltAndThePackagesImageHoldsNoUdf() throws Exception {
    Path archive =
        TestImages.tinyBaseArchive(
            tmp.resolve("base/tiny.tar"),
            Map.of("usr/bin/python3", "#!/bin/sh\necho python\n"),
            Map.of("dev.kiln.python.version", "3.11.2"));
    BaseImage base = BaseImage.parse(archive.toString());
    Path wheel =
        new TestWheels("demo_pkg", "1.2.0", true)
            .file("demo_pkg/__init__.py", "VALUE = 42\n")
            .write(Files.createDirectories(tmp.resolve("wheels")));
    Digest sha;
    try (InputStream in = Files.newInputStream(wheel)) {
      sha = Digest.of(in);
    }
    String filename = wheel.getFileName().toString();
    Lock lock =
        new Lock(
            List.of(
                new LockedPackage(
                    "demo-pkg",
                    "1.2.0",
                    filename,
                    URI.create("http://index/" + filename),
                    sha.hex())));
    List<FetchInputs.Fetched> wheels = List.of(new FetchInputs.Fetched(filename, sha, wheel));
    List<ImageLayer> prepared = new CopyOnWriteArrayList<>();
    ImageHost host =
        new ImageHost() {
          @Override
          public void prepare(BuiltImage image) {}

          @Override
          public String run(BuiltImage image, List<String> argv) throws IOException {
            throw new IOException("not here");
          }

          @Override
          public void prepareLayer(ImageLayer layer) {
            prepared.add(layer);
          }
        };
    RunnerLayer runner =
        new RunnerLayer(
            Map.of("/kiln/runner/run.py", "print(1)\n".getBytes(StandardCharsets.UTF_8)),
            List.of("python3", "/kiln/runner/run.py"),
            Map.of("KILN_TEST", "1"),
            "test");
    ExecutorService executor = Executors.newFixedThreadPool(2);
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("images"))) {
      Runtimes.Runtime runtime =
          new Runtimes.Runtime("default", base, "sha256:" + "1".repeat(64), builder);
      BuildImage images =
          new BuildImage(new WheelLayers(tmp.resolve("work")), runner, executor, host);

      BuiltImage udf =
          images
              .build(
                  new BuildImage.Recipe(
                      runtime,
                      PYTHON,
                      ContentKey.ofBytes(new byte[32]),
                      "f",
                      Map.of("/kiln/udf/udf.py", "def f(x):\n    return x\n".getBytes()),
                      lock,
                      wheels,
                      List.of()))
              .image();
      BuiltImage packages = images.packagesImage(runtime, PYTHON, lock, wheels).image();

      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (prepared.isEmpty()) {
        assertThat(System.nanoTime()).as("the wheel layer reached the host").isLessThan(deadline);
        LockSupport.parkNanos(1_000_000);
      }
      Digest wheelLayer = prepared.get(0).digest();
      List<Digest> udfLayers = udf.layers().stream().map(ImageLayer::digest).toList();
      assertThat(udfLayers).contains(wheelLayer);
      assertThat(packages.layers().stream().map(ImageLayer::digest).toList())
          .as("base, the wheel layer, the runner: no code layer")
          .hasSize(udfLayers.size() - 1)
          .contains(wheelLayer)
          .isSubsetOf(udfLayers);
      assertThat(packages.name()).isNotEqualTo(udf.name());
    } finally {
      executor.shutdownNow();
    }
  }
}
