package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Wheel layers as a cache: the same wheel and layout give the same layer in any work directory, a
 * layer is built once (also by concurrent calls) and reused across restarts and images, and what a
 * crashed build left is cleaned up. Over the tiny base of {@link WheelLayersTest}.
 */
class WheelLayerCacheTest {
  @TempDir Path tmp;
  private BaseImage base;

  @BeforeEach
  void tinyBase() throws IOException {
    base = WheelLayersTest.tinyBase(tmp);
  }

  @Test
  void sameWheelAndLayoutGiveTheSameLayerDigestInFreshWorkDirs() throws Exception {
    Path wheel = WheelLayersTest.demo().write(tmp.resolve("wheels"));
    String filename = wheel.getFileName().toString();
    // Another copy of the same bytes, elsewhere and newer: only the content counts.
    Path copy = Files.copy(wheel, Files.createDirectories(tmp.resolve("copy")).resolve(filename));

    ImageLayer one = wheelLayer(tmp.resolve("one"), wheel, filename, TestWheels.DEBIAN);
    ImageLayer two = wheelLayer(tmp.resolve("two"), copy, filename, TestWheels.DEBIAN);
    ImageLayer split = wheelLayer(tmp.resolve("three"), wheel, filename, TestWheels.SPLIT);
    InstallLayout otherPython =
        new InstallLayout(
            TestWheels.DEBIAN.purelib(),
            TestWheels.DEBIAN.platlib(),
            TestWheels.DEBIAN.scripts(),
            TestWheels.DEBIAN.data(),
            TestWheels.DEBIAN.headers(),
            "/usr/local/bin/python3.11");
    ImageLayer interpreter = wheelLayer(tmp.resolve("four"), wheel, filename, otherPython);

    assertThat(two.digest()).isEqualTo(one.digest());
    assertThat(two.diffId()).isEqualTo(one.diffId());
    assertThat(split.digest()).isNotEqualTo(one.digest());
    assertThat(interpreter.digest()).isNotEqualTo(one.digest()).isNotEqualTo(split.digest());

    // What the layer holds: the paths pip would install, with modes, root-owned, fixed times.
    Map<String, LayoutCheck.Entry> entries = new HashMap<>();
    LayoutCheck.entries(one.blob()).forEach(e -> entries.put(e.name(), e));
    LayoutCheck.Entry script = entries.get("usr/local/bin/demo-tool");
    assertThat(script.mode() & 0777).isEqualTo(0755);
    assertThat(new String(script.content(), StandardCharsets.UTF_8))
        .startsWith("#!/usr/bin/python3\n");
    assertThat(entries.get("usr/local/lib/python3.11/dist-packages/demo_pkg/cli.py").mode() & 0777)
        .isEqualTo(0644);
    assertThat(entries)
        .containsKeys(
            "usr/local/include/python3.11/demo_pkg/demo.h", "usr/local/share/demo/README");
  }

  @Test
  void layersAreReusedAcrossRestartsAndSharedByImages() throws Exception {
    Path wheel = WheelLayersTest.demo().write(tmp.resolve("wheels"));
    String filename = wheel.getFileName().toString();
    Path work = tmp.resolve("wheels-work");
    LayerSpec first = new WheelLayers(work).layerFor(wheel, filename, TestWheels.DEBIAN);
    long modified = Files.getLastModifiedTime(first.blob().file()).to(TimeUnit.NANOSECONDS);

    // A restart: a new instance on the same directory gives the same layer, not built again.
    LayerSpec again = new WheelLayers(work).layerFor(wheel, filename, TestWheels.DEBIAN);
    assertThat(again).isEqualTo(first);
    assertThat(Files.getLastModifiedTime(again.blob().file()).to(TimeUnit.NANOSECONDS))
        .isEqualTo(modified);
    try (Stream<Path> files = Files.list(work)) {
      assertThat(files).hasSize(2); // the layer and the file with its digests
    }

    // Two images with the wheel: the same layer, right over the base, stored once.
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("images"))) {
      BuiltImage a = builder.build(WheelLayersTest.image("kiln/udf:a", first, "def a(): pass\n"));
      BuiltImage b = builder.build(WheelLayersTest.image("kiln/udf:b", again, "def b(): pass\n"));
      assertThat(a.layers()).hasSize(3);
      assertThat(a.layers().get(1).digest()).isEqualTo(first.blob().digest());
      assertThat(a.layers().get(1).diffId()).isEqualTo(first.blob().diffId());
      assertThat(b.layers().get(1)).isEqualTo(a.layers().get(1));
      assertThat(b.layers().get(2)).isNotEqualTo(a.layers().get(2));
      LayoutCheck.Image image = LayoutCheck.image(builder.layoutDir(), "kiln/udf:a");
      JsonNode history = image.config().path("history");
      assertThat(history.get(history.size() - 2).path("comment").asText()).isEqualTo(first.name());
      assertThat(history.get(history.size() - 1).path("comment").asText()).isEqualTo("code");
      assertThat(image.config().path("config").path("Entrypoint").get(0).asText())
          .isEqualTo("/usr/bin/python3");
      Path stored = builder.layoutDir().resolve("blobs/sha256/" + first.blob().digest().hex());
      assertThat(Files.isSameFile(stored, first.blob().file()))
          .as("the layout links the layer's file, it does not write its bytes again")
          .isTrue();
    }
  }

  @Test
  void builtLayersMustComeFirstAndStayInPlace() throws Exception {
    Path wheel = WheelLayersTest.demo().write(tmp.resolve("wheels"));
    LayerSpec layer =
        new WheelLayers(tmp.resolve("work"))
            .layerFor(wheel, wheel.getFileName().toString(), TestWheels.DEBIAN);
    LayerSpec code =
        new LayerSpec("code", List.of(LayerFile.ofBytes("/kiln/udf/udf.py", new byte[1], 0644)));
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("images"))) {
      assertThatThrownBy(
              () -> builder.build(TestImages.request("kiln/udf:x", List.of(code, layer))))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("comes after layer code; put built (package) layers first");
      Files.delete(layer.blob().file());
      assertThatThrownBy(() -> builder.build(WheelLayersTest.image("kiln/udf:y", layer, "pass\n")))
          .isInstanceOf(KilnException.class)
          .hasMessageContaining("is gone; it must stay in place");
    }
    assertThatThrownBy(() -> new LayerSpec("both", code.files(), layer.blob()))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("both files and a built blob");
  }

  @Test
  void concurrentCallsBuildOnce() throws Exception {
    Path wheel = WheelLayersTest.demo().write(tmp.resolve("wheels"));
    String filename = wheel.getFileName().toString();
    WheelLayers layers = new WheelLayers(tmp.resolve("work"));
    List<LayerSpec> results = new ArrayList<>();
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try {
      List<Future<LayerSpec>> futures = new ArrayList<>();
      for (int i = 0; i < 8; i++) {
        futures.add(pool.submit(() -> layers.layerFor(wheel, filename, TestWheels.DEBIAN)));
      }
      for (Future<LayerSpec> f : futures) {
        results.add(f.get());
      }
    } finally {
      pool.shutdownNow();
    }
    assertThat(results).allSatisfy(r -> assertThat(r).isEqualTo(results.get(0)));
    try (Stream<Path> files = Files.list(tmp.resolve("work"))) {
      assertThat(files).hasSize(2);
    }
  }

  @Test
  void layersArePlainTarsUnlessGzipIsAskedForAndBothHoldTheSameTar() throws Exception {
    Path wheel = WheelLayersTest.demo().write(tmp.resolve("wheels"));
    String filename = wheel.getFileName().toString();
    WheelLayers layers = new WheelLayers(tmp.resolve("work"));
    LayerBlob plain = layers.layerFor(wheel, filename, TestWheels.SPLIT).blob();
    layers.setGzipLevel(1);
    LayerBlob gzip = layers.layerFor(wheel, filename, TestWheels.SPLIT).blob();

    assertThat(plain.mediaType()).isEqualTo("application/vnd.oci.image.layer.v1.tar");
    assertThat(plain.digest()).isEqualTo(plain.diffId());
    assertThat(plain.file().getFileName().toString()).endsWith(".tar");
    assertThat(LayoutCheck.gzipped(plain.file())).isFalse();
    assertThat(gzip.mediaType()).isEqualTo("application/vnd.oci.image.layer.v1.tar+gzip");
    assertThat(LayoutCheck.gzipped(gzip.file())).isTrue();
    assertThat(gzip.file()).as("the compression is part of the key").isNotEqualTo(plain.file());
    assertThat(gzip.diffId()).as("the same tar inside").isEqualTo(plain.diffId());

    // Images carry each as what it is; the layout stays valid either way.
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("images"))) {
      for (LayerBlob blob : List.of(plain, gzip)) {
        BuiltImage image =
            builder.build(
                new ImageRequest(
                    "kiln/udf:" + blob.digest().hex().substring(0, 8),
                    List.of(LayerSpec.ofBlob("wheel " + filename, blob)),
                    List.of("/usr/bin/python3"),
                    List.of(),
                    Map.of(),
                    "/",
                    Map.of()));
        LayoutCheck.image(builder.layoutDir(), image.name());
        ImageLayer layer = image.layers().get(1);
        assertThat(layer.mediaType()).isEqualTo(blob.mediaType());
        assertThat(layer.digest()).isEqualTo(blob.digest());
        assertThat(layer.diffId()).isEqualTo(blob.diffId());
      }
    }

    // A restart finds each layer with its media type.
    WheelLayers restarted = new WheelLayers(tmp.resolve("work"));
    assertThat(restarted.layerFor(wheel, filename, TestWheels.SPLIT).blob()).isEqualTo(plain);
    restarted.setGzipLevel(1);
    assertThat(restarted.layerFor(wheel, filename, TestWheels.SPLIT).blob()).isEqualTo(gzip);
  }

  @Test
  void temporaryFilesOlderThanAnHourAreRemovedBeforeTheFirstBuild() throws Exception {
    Instant now = Instant.parse("2025-01-01T12:00:00Z");
    Path work = Files.createDirectories(tmp.resolve("work"));
    Path crashed = aged(work.resolve(".tmp-crashed.tar.gz"), now.minus(Duration.ofMinutes(61)));
    Path atTheHour = aged(work.resolve(".tmp-hour.layer"), now.minus(Duration.ofHours(1)));
    Path building = aged(work.resolve(".tmp-building.tar.gz"), now.minus(Duration.ofMinutes(59)));
    Path oldLayer = aged(work.resolve("old.tar.gz"), now.minus(Duration.ofDays(30)));
    WheelLayers layers = new WheelLayers(work, Clock.fixed(now, ZoneOffset.UTC));
    Path wheel = WheelLayersTest.small("changed").write(tmp.resolve("wheels"));
    assertThat(crashed).as("not before a build").exists();

    layers.layerFor(wheel, wheel.getFileName().toString(), TestWheels.DEBIAN);
    assertThat(crashed).doesNotExist();
    assertThat(atTheHour).exists();
    assertThat(building).as("another build's, still running").exists();
    assertThat(oldLayer).as("not a temporary file").exists();
  }

  /** A file last modified at {@code when}. */
  private static Path aged(Path file, Instant when) throws IOException {
    Files.writeString(file, "x");
    Files.setLastModifiedTime(file, FileTime.from(when));
    return file;
  }

  private ImageLayer wheelLayer(Path work, Path wheel, String filename, InstallLayout layout)
      throws Exception {
    LayerSpec layer = new WheelLayers(work.resolve("wheels")).layerFor(wheel, filename, layout);
    try (ImageBuilder builder = new ImageBuilder(base, work.resolve("images"))) {
      BuiltImage image =
          builder.build(WheelLayersTest.image("kiln/udf:w", layer, "def f(): pass\n"));
      LayoutCheck.image(builder.layoutDir(), "kiln/udf:w");
      assertThat(image.layers()).hasSize(3);
      assertThat(image.layers().get(1).digest()).isEqualTo(layer.blob().digest());
      return image.layers().get(1);
    }
  }
}
