package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Builds over a tiny docker-save base image made here, so every case runs in about a second. */
class ImageBuilderTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path tmp;
  private Path archive;
  private BaseImage base;
  private final byte[] library = randomBytes(20_000, 7);

  @BeforeEach
  void tinyBase() throws IOException {
    archive =
        TestImages.tinyBaseArchive(
            tmp.resolve("base/tiny.tar"),
            Map.of("usr/bin/python3", "#!/bin/sh\necho python\n", "etc/os-release", "ID=tiny\n"),
            Map.of("dev.kiln.python.version", "3.11.2", "dev.kiln.base", "tiny"));
    base = BaseImage.parse(archive.toString());
  }

  @Test
  void buildWritesAValidOciLayout() throws Exception {
    ImageRequest request = TestImages.udf("kiln/udf:one", library, "def f(x):\n    return x\n");
    BuiltImage built;
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      built = builder.build(request);
      assertThat(builder.layoutDir()).isEqualTo(tmp.resolve("work/oci").toRealPath());
    }

    LayoutCheck.Image image = LayoutCheck.image(tmp.resolve("work/oci"), "kiln/udf:one");
    assertThat(built.manifestDigest()).isEqualTo(image.manifestDigest());
    assertThat(built.configDigest().toString())
        .isEqualTo(image.manifest().path("config").path("digest").asText());

    // Base first: the archive's layer, byte for byte, then the request's layers in order.
    assertThat(built.layers()).hasSize(3);
    TestImages.ArchiveLayer baseLayer = TestImages.onlyLayer(archive);
    assertThat(built.layers().get(0).digest()).isEqualTo(baseLayer.digest());
    assertThat(built.layers().get(0).diffId()).isEqualTo(baseLayer.diffId());
    assertThat(entryNames(built.layers().get(1).blob())).contains("kiln/lib/library.bin");
    assertThat(entryNames(built.layers().get(2).blob())).contains("kiln/udf/udf.py");
    for (int i = 0; i < 3; i++) {
      ImageLayer layer = built.layers().get(i);
      assertThat(layer.blob()).isEqualTo(image.layerBlobs().get(i));
      assertThat(layer.size()).isEqualTo(Files.size(layer.blob()));
      assertThat(layer.mediaType()).isEqualTo("application/vnd.oci.image.layer.v1.tar+gzip");
      assertThat(layer.diffId().toString())
          .isEqualTo(image.config().path("rootfs").path("diff_ids").get(i).asText());
    }

    JsonNode config = image.config().path("config");
    assertThat(strings(config.path("Entrypoint")))
        .containsExactly("/usr/bin/python3", "/kiln/udf/udf.py");
    assertThat(strings(config.path("Cmd"))).containsExactly("--serve");
    assertThat(config.path("WorkingDir").asText()).isEqualTo("/kiln/udf");
    // Base environment kept, request's added and overriding.
    assertThat(strings(config.path("Env")))
        .containsExactlyInAnyOrder(
            "PATH=/usr/bin:/bin", "LANG=C", "KILN_UDF=kiln/udf:one", "PYTHONUNBUFFERED=1");
    assertThat(
            JSON.convertValue(config.path("Labels"), new TypeReference<Map<String, String>>() {}))
        .containsEntry("dev.kiln.python.version", "3.11.2")
        .containsEntry("dev.kiln.udf", "kiln/udf:one")
        .containsEntry("dev.kiln.runner", "1");
    assertThat(image.config().path("created").asText()).isEqualTo("1970-01-01T00:00:00Z");
    assertThat(built.entrypoint()).containsExactly("/usr/bin/python3", "/kiln/udf/udf.py");
    assertThat(built.cmd()).containsExactly("--serve");
    assertThat(built.env()).isEqualTo(strings(config.path("Env")));
    assertThat(built.workingDir()).isEqualTo("/kiln/udf");

    // Scratch files are gone; only the layout and Jib's caches remain.
    try (Stream<Path> scratch = Files.list(tmp.resolve("work/tmp"))) {
      assertThat(scratch).isEmpty();
    }
  }

  @Test
  void layerTarsHaveThePathsModesOwnersAndTimesAsked() throws Exception {
    byte[] big = randomBytes(3_000_000, 11);
    Path bigFile = Files.write(tmp.resolve("wheel.bin"), big);
    ImageRequest request =
        new ImageRequest(
            "kiln/udf:modes",
            List.of(
                new LayerSpec(
                    "code",
                    List.of(
                        LayerFile.ofBytes(
                            "/kiln/udf/udf.py",
                            "print(1)\n".getBytes(StandardCharsets.UTF_8),
                            0644),
                        LayerFile.ofBytes(
                            "/kiln/udf/run.sh",
                            "#!/bin/sh\n".getBytes(StandardCharsets.UTF_8),
                            0750),
                        LayerFile.ofFile("/opt/wheels/pkg.whl", bigFile, 0444)))),
            List.of("/kiln/udf/run.sh"),
            List.of(),
            Map.of(),
            "",
            Map.of());
    BuiltImage built;
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      built = builder.build(request);
    }

    List<LayoutCheck.Entry> entries = LayoutCheck.entries(built.layers().get(1).blob());
    assertThat(entries)
        .extracting(LayoutCheck.Entry::name)
        .containsExactly(
            "kiln/",
            "kiln/udf/",
            "kiln/udf/run.sh",
            "kiln/udf/udf.py",
            "opt/",
            "opt/wheels/",
            "opt/wheels/pkg.whl");
    Map<String, LayoutCheck.Entry> byName = new HashMap<>();
    entries.forEach(e -> byName.put(e.name(), e));
    assertThat(byName.get("kiln/udf/").mode()).isEqualTo(040755);
    assertThat(byName.get("kiln/udf/run.sh").mode()).isEqualTo(0100750);
    assertThat(byName.get("kiln/udf/udf.py").mode()).isEqualTo(0100644);
    assertThat(byName.get("opt/wheels/pkg.whl").mode()).isEqualTo(0100444);
    assertThat(new String(byName.get("kiln/udf/udf.py").content(), StandardCharsets.UTF_8))
        .isEqualTo("print(1)\n");
    assertThat(byName.get("opt/wheels/pkg.whl").content()).isEqualTo(big);
    assertThat(entries)
        .allSatisfy(
            e -> {
              assertThat(e.uid()).isZero();
              assertThat(e.gid()).isZero();
              assertThat(e.mtimeSeconds()).isEqualTo(1);
            });
    // An empty cmd with an entrypoint means no cmd, not the base image's "python3".
    assertThat(built.cmd()).isEmpty();
    assertThat(built.workingDir()).isEqualTo("/");
  }

  @Test
  void sameInputsGiveTheSameDigestInFreshWorkDirs() throws Exception {
    ImageRequest request = TestImages.udf("kiln/udf:same", library, "def f(x):\n    return x\n");
    // The same request with maps and files in other orders.
    Map<String, String> env = new LinkedHashMap<>();
    List<String> keys = new ArrayList<>(request.env().keySet());
    keys.sort(java.util.Comparator.reverseOrder());
    keys.forEach(k -> env.put(k, request.env().get(k)));
    List<LayerSpec> layers = new ArrayList<>();
    for (LayerSpec spec : request.layers()) {
      List<LayerFile> files = new ArrayList<>(spec.files());
      java.util.Collections.reverse(files);
      layers.add(new LayerSpec(spec.name(), files));
    }
    ImageRequest reordered =
        new ImageRequest(
            request.name(),
            layers,
            request.entrypoint(),
            request.cmd(),
            env,
            request.workingDir(),
            request.labels());

    BuiltImage first;
    BuiltImage second;
    try (ImageBuilder one = new ImageBuilder(base, tmp.resolve("one"));
        ImageBuilder two =
            new ImageBuilder(BaseImage.parse(archive.toString()), tmp.resolve("two"))) {
      first = one.build(request);
      second = two.build(reordered);
    }
    assertThat(second.manifestDigest()).isEqualTo(first.manifestDigest());
    assertThat(second.configDigest()).isEqualTo(first.configDigest());
    assertThat(LayoutCheck.image(tmp.resolve("two/oci"), request.name()).manifestDigest())
        .isEqualTo(first.manifestDigest());

    // And a different input gives a different image.
    try (ImageBuilder three = new ImageBuilder(base, tmp.resolve("three"))) {
      BuiltImage other =
          three.build(TestImages.udf("kiln/udf:same", library, "def f(x):\n    return -x\n"));
      assertThat(other.manifestDigest()).isNotEqualTo(first.manifestDigest());
    }
  }

  @Test
  void aSecondBuildDoesNotRewriteBlobsThatExist() throws Exception {
    Path layout;
    Map<Path, Object> inodes = new HashMap<>();
    Map<Path, FileTime> mtimes = new HashMap<>();
    BuiltImage first;
    BuiltImage second;
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      layout = builder.layoutDir();
      first = builder.build(TestImages.udf("kiln/udf:a", library, "A = 1\n"));
      for (Path blob : blobs(layout)) {
        inodes.put(blob, Files.getAttribute(blob, "unix:ino"));
        mtimes.put(blob, Files.getLastModifiedTime(blob));
      }
      // Make any rewrite visible in the mtime, however coarse the clock.
      for (Path blob : inodes.keySet()) {
        Files.setLastModifiedTime(blob, FileTime.fromMillis(1_000_000));
        mtimes.put(blob, FileTime.fromMillis(1_000_000));
      }
      second = builder.build(TestImages.udf("kiln/udf:b", library, "B = 2\n"));
    }

    // Base and library layers are shared, the code layer is not.
    assertThat(second.layers().get(0)).isEqualTo(first.layers().get(0));
    assertThat(second.layers().get(1)).isEqualTo(first.layers().get(1));
    assertThat(second.layers().get(2).digest()).isNotEqualTo(first.layers().get(2).digest());
    for (Path blob : inodes.keySet()) {
      assertThat(Files.getAttribute(blob, "unix:ino"))
          .as("inode of %s", blob)
          .isEqualTo(inodes.get(blob));
      assertThat(Files.getLastModifiedTime(blob))
          .as("mtime of %s", blob)
          .isEqualTo(mtimes.get(blob));
    }
    assertThat(blobs(layout)).hasSize(inodes.size() + 3); // code layer, config, manifest
    LayoutCheck.image(layout, "kiln/udf:a");
    LayoutCheck.image(layout, "kiln/udf:b");
  }

  @Test
  void findReturnsTheSameImageFromANewBuilder() throws Exception {
    Path work = tmp.resolve("work");
    BuiltImage built;
    try (ImageBuilder builder = new ImageBuilder(base, work)) {
      built = builder.build(TestImages.udf("kiln/udf:kept", library, "K = 1\n"));
      assertThat(builder.find("kiln/udf:kept")).contains(built);
    }
    try (ImageBuilder restarted = new ImageBuilder(BaseImage.parse(archive.toString()), work)) {
      assertThat(restarted.find("kiln/udf:kept")).contains(built);
      assertThat(restarted.find("kiln/udf:other")).isEmpty();
    }
  }

  @Test
  void rebuildingANameReplacesItsIndexEntry() throws Exception {
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      BuiltImage old = builder.build(TestImages.udf("kiln/udf:x", library, "V = 1\n"));
      builder.build(TestImages.udf("kiln/udf:y", library, "V = 1\n"));
      BuiltImage replaced = builder.build(TestImages.udf("kiln/udf:x", library, "V = 2\n"));
      assertThat(replaced.manifestDigest()).isNotEqualTo(old.manifestDigest());
      assertThat(builder.find("kiln/udf:x")).contains(replaced);

      JsonNode index = JSON.readTree(builder.layoutDir().resolve("index.json").toFile());
      assertThat(index.path("manifests")).hasSize(2);
      assertThat(LayoutCheck.image(builder.layoutDir(), "kiln/udf:x").manifestDigest())
          .isEqualTo(replaced.manifestDigest());
    }
  }

  @Test
  void concurrentBuildsAllLandInTheIndex() throws Exception {
    int builds = 6;
    ExecutorService pool = Executors.newFixedThreadPool(3);
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      List<Future<BuiltImage>> futures = new ArrayList<>();
      for (int i = 0; i < builds; i++) {
        ImageRequest request = TestImages.udf("kiln/udf:c" + i, library, "C = " + i + "\n");
        futures.add(pool.submit(() -> builder.build(request)));
      }
      for (int i = 0; i < builds; i++) {
        BuiltImage built = futures.get(i).get();
        assertThat(builder.find("kiln/udf:c" + i)).contains(built);
        LayoutCheck.image(builder.layoutDir(), "kiln/udf:c" + i);
      }
    } finally {
      pool.shutdownNow();
    }
  }

  @Test
  void noLayersGiveTheBaseImageWithTheNewConfiguration() throws Exception {
    ImageRequest request =
        new ImageRequest(
            "kiln/udf:bare",
            List.of(new LayerSpec("empty", List.of())),
            List.of(),
            List.of(),
            Map.of("X", "1"),
            "",
            Map.of());
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      BuiltImage bare = builder.build(request);
      assertThat(bare.layers()).hasSize(1);
      assertThat(bare.layers().get(0).diffId()).isEqualTo(TestImages.onlyLayer(archive).diffId());
      // Nothing set: the base image's entrypoint and cmd are kept.
      assertThat(bare.entrypoint()).isEmpty();
      assertThat(bare.cmd()).containsExactly("python3");
      assertThat(bare.env()).contains("X=1", "LANG=C.UTF-8");
    }
  }

  @Test
  void aMissingBaseArchiveSaysHowToCreateIt() throws IOException {
    BaseImage missing = BaseImage.parse("docker-archive:" + tmp.resolve("nowhere/base.tar"));
    try (ImageBuilder builder = new ImageBuilder(missing, tmp.resolve("work"))) {
      assertThatThrownBy(() -> builder.build(TestImages.udf("kiln/udf:m", library, "")))
          .isInstanceOf(KilnException.class)
          .hasMessageContaining("nowhere/base.tar")
          .hasMessageContaining("does not exist")
          .hasMessageContaining("bin/build-base-image");
    }
  }

  @Test
  void aDamagedBaseArchiveSaysHowToReplaceIt() throws IOException {
    Path damaged =
        Files.writeString(tmp.resolve("damaged.tar"), "this is not a tar archive\n".repeat(100));
    try (ImageBuilder builder =
        new ImageBuilder(BaseImage.parse(damaged.toString()), tmp.resolve("work"))) {
      assertThatThrownBy(() -> builder.build(TestImages.udf("kiln/udf:d", library, "")))
          .isInstanceOf(KilnException.class)
          .hasMessageContaining(damaged.toString())
          .hasMessageContaining("bin/build-base-image");
    }
  }

  @Test
  void aReplacedBaseArchiveIsNotBuiltUnderItsOldDigest() throws Exception {
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      String digest = base.digest();
      // Another image, as a rebuild gives (tar pads to 512-byte blocks, so one more file makes
      // sure it is not byte-for-byte the same length, which a rewrite in the same clock tick
      // could not be told from).
      TestImages.tinyBaseArchive(
          archive,
          Map.of(
              "usr/bin/python3",
              "#!/bin/sh\necho other python\n",
              "usr/lib/python3/os.py",
              "# " + "x".repeat(4096) + "\n"),
          Map.of());
      assertThat(base.digest()).isEqualTo(digest); // the identity handed out stays put
      assertThatThrownBy(() -> builder.build(TestImages.udf("kiln/udf:r", library, "")))
          .isInstanceOf(KilnException.class)
          .hasMessageContaining("was replaced")
          .hasMessageContaining("restart");
    }
  }

  @Test
  void anUnreachableRegistrySaysSo() throws IOException {
    int closedPort;
    try (ServerSocket socket = new ServerSocket(0)) {
      closedPort = socket.getLocalPort();
    }
    BaseImage unreachable = BaseImage.parse("localhost:" + closedPort + "/kiln/base:1");
    try (ImageBuilder builder = new ImageBuilder(unreachable, tmp.resolve("work"))) {
      assertThatThrownBy(() -> builder.build(TestImages.udf("kiln/udf:u", library, "")))
          .isInstanceOf(KilnException.class)
          .hasMessageContaining("localhost:" + closedPort)
          .hasMessageContaining("cannot be reached");
    }
  }

  @Test
  void aMissingSourceFileIsReported() throws IOException {
    Path gone = tmp.resolve("gone.whl");
    ImageRequest request =
        new ImageRequest(
            "kiln/udf:g",
            List.of(
                new LayerSpec("wheels", List.of(LayerFile.ofFile("/opt/gone.whl", gone, 0644)))),
            List.of("python3"),
            List.of(),
            Map.of(),
            "/",
            Map.of());
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      assertThatThrownBy(() -> builder.build(request))
          .isInstanceOf(KilnException.class)
          .hasMessageContaining(gone.toString())
          .hasMessageContaining("does not exist");
    }
  }

  @Test
  void badRequestsAreRejected() throws IOException {
    byte[] x = {1};
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      assertThatThrownBy(
              () ->
                  builder.build(
                      new ImageRequest(
                          "kiln/udf:d",
                          List.of(
                              new LayerSpec(
                                  "dup",
                                  List.of(
                                      LayerFile.ofBytes("/a", x, 0644),
                                      LayerFile.ofBytes("/a", x, 0600)))),
                          List.of(),
                          List.of(),
                          Map.of(),
                          "/",
                          Map.of())))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("/a twice");
      assertThatThrownBy(
              () ->
                  builder.build(
                      new ImageRequest(
                          "kiln/udf:s",
                          List.of(
                              new LayerSpec("setuid", List.of(LayerFile.ofBytes("/a", x, 04755)))),
                          List.of(),
                          List.of(),
                          Map.of(),
                          "/",
                          Map.of())))
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("4755");
    }
  }

  private static List<String> entryNames(Path layerBlob) throws IOException {
    return LayoutCheck.entries(layerBlob).stream().map(LayoutCheck.Entry::name).toList();
  }

  private static List<Path> blobs(Path layout) throws IOException {
    try (Stream<Path> files = Files.list(layout.resolve("blobs/sha256"))) {
      return files.toList();
    }
  }

  private static List<String> strings(JsonNode array) {
    List<String> out = new ArrayList<>();
    array.forEach(n -> out.add(n.asText()));
    return out;
  }

  static byte[] randomBytes(int n, long seed) {
    byte[] bytes = new byte[n];
    new Random(seed).nextBytes(bytes);
    return bytes;
  }
}
