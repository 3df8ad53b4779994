package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import java.util.zip.GZIPInputStream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * File-backed layers compressed by Kiln into Jib's application layer cache: Jib must take them as
 * built (no second compression), the tar inside must be exactly the one Jib makes, and at Jib's own
 * level the whole layer must be Jib's, byte for byte.
 */
class LayerCompressorTest {
  @TempDir Path tmp;
  private BaseImage base;
  private LayerSpec files;

  @BeforeEach
  void setUp() throws IOException {
    assertThat(LayerCompressor.available()).as("Jib's layer selector is reachable").isTrue();
    base =
        BaseImage.parse(
            TestImages.tinyBaseArchive(
                    tmp.resolve("base/tiny.tar"),
                    Map.of("usr/bin/python3", "#!/bin/sh\n"),
                    Map.of())
                .toString());
    // Compressible but not trivially so: text with some randomness, plus an executable.
    Path dir = Files.createDirectories(tmp.resolve("files"));
    Random random = new Random(11);
    List<LayerFile> list = new ArrayList<>();
    for (int i = 0; i < 20; i++) {
      StringBuilder text = new StringBuilder();
      for (int j = 0; j < 3000; j++) {
        text.append("line ")
            .append(random.nextInt(1000))
            .append(" of file ")
            .append(i)
            .append('\n');
      }
      Path f = Files.writeString(dir.resolve("m" + i + ".py"), text);
      list.add(LayerFile.ofFile("/site/pkg/m" + i + ".py", f, 0644));
    }
    Path tool = Files.writeString(dir.resolve("tool"), "#!/bin/sh\necho tool\n");
    list.add(LayerFile.ofFile("/usr/local/bin/tool", tool, 0755));
    files = new LayerSpec("wheel pkg-1.0-py3-none-any.whl", list);
  }

  @Test
  void atJibsLevelTheLayerIsJibsOwnByteForByte() throws Exception {
    ImageLayer jib = fileLayer(tmp.resolve("jib"), 6); // left to Jib
    // Kiln's compressor at level 6, on a cache Jib never wrote to.
    Path work = tmp.resolve("kiln6");
    try (ImageBuilder builder = new ImageBuilder(base, work)) {
      builder.setGzipLevel(1); // opens the layout and caches
    }
    Path cache = work.resolve("jib/application");
    assertThat(new LayerCompressor(cache, 6).ensure(entries(cache.getParent().getParent())))
        .isRegularFile();
    ImageLayer kiln = fileLayer(work, 6);
    assertThat(kiln.digest()).isEqualTo(jib.digest());
    assertThat(kiln.diffId()).isEqualTo(jib.diffId());
    // Jib found Kiln's entry under the selector it computes itself: had it missed, it would have
    // built the same layer again and written a third selector (file layer, code layer).
    try (Stream<Path> selectors = Files.list(cache.resolve("selectors"))) {
      assertThat(selectors).hasSize(2);
    }
  }

  @Test
  void jibTakesTheFasterLayerAsBuiltAndTheTarIsUnchanged() throws Exception {
    ImageLayer jib = fileLayer(tmp.resolve("jib"), 6);
    ImageLayer fast = fileLayer(tmp.resolve("fast"), 1);
    ImageLayer stored = fileLayer(tmp.resolve("stored"), 0);
    ImageLayer again = fileLayer(tmp.resolve("again"), 1);

    // Same tar inside (diff_id), other compression (digest); reproducible across work dirs.
    assertThat(fast.diffId()).isEqualTo(jib.diffId()).isEqualTo(stored.diffId());
    assertThat(fast.digest()).isNotEqualTo(jib.digest()).isNotEqualTo(stored.digest());
    assertThat(again.digest()).isEqualTo(fast.digest());
    assertThat(stored.size()).isGreaterThan(fast.size());
    assertThat(fast.size()).isGreaterThan(jib.size());
    try (InputStream in = new GZIPInputStream(Files.newInputStream(stored.blob()))) {
      assertThat(dev.kiln.cache.Digest.of(in)).isEqualTo(jib.diffId());
    }

    // Jib did not build the layer a second time: one cache entry for it, the one Kiln wrote.
    try (Stream<Path> layers = Files.list(tmp.resolve("fast/jib/application/layers"))) {
      List<String> names = layers.map(p -> p.getFileName().toString()).toList();
      assertThat(names).contains(fast.digest().hex());
    }
    try (Stream<Path> selectors = Files.list(tmp.resolve("fast/jib/application/selectors"))) {
      List<String> contents = new ArrayList<>();
      for (Path p : selectors.toList()) {
        contents.add(Files.readString(p, StandardCharsets.UTF_8));
      }
      assertThat(contents).containsOnlyOnce(fast.digest().hex());
    }
  }

  @Test
  void aPreparedLayerIsReadyBeforeTheBuild() throws Exception {
    Path work = tmp.resolve("prepared");
    try (ImageBuilder builder = new ImageBuilder(base, work)) {
      builder.prepare(files);
      builder.prepare(code("in memory: nothing to prepare\n"));
      Path layers = work.resolve("jib/application/layers");
      assertThat(count(layers)).isEqualTo(1);
      builder.prepare(files); // again: already there
      assertThat(count(layers)).isEqualTo(1);
      BuiltImage image = builder.build(request(List.of(files, code("def f(): pass\n"))));
      assertThat(count(layers)).as("only the code layer was added").isEqualTo(2);
      assertThat(
              work.resolve("jib/application/layers").resolve(image.layers().get(1).digest().hex()))
          .isDirectory();
    }
  }

  @Test
  void layersWithInMemoryFilesAreLeftToJib() throws Exception {
    Path work = tmp.resolve("mixed");
    try (ImageBuilder builder = new ImageBuilder(base, work)) {
      builder.setGzipLevel(1);
      BuiltImage image = builder.build(request(List.of(files, code("def f(): pass\n"))));
      // The code layer (staged bytes) is Jib's own level-6 gzip: rebuilding it with Jib's level
      // gives the same digest.
      try (ImageBuilder jib = new ImageBuilder(base, tmp.resolve("mixed-jib"))) {
        jib.setGzipLevel(6);
        BuiltImage same = jib.build(request(List.of(files, code("def f(): pass\n"))));
        assertThat(image.layers().get(2))
            .extracting(ImageLayer::digest)
            .isEqualTo(same.layers().get(2).digest());
        assertThat(image.layers().get(1).digest()).isNotEqualTo(same.layers().get(1).digest());
      }
    }
  }

  /** Builds an image with the file layer and a code layer; returns the file layer. */
  private ImageLayer fileLayer(Path work, int level) throws Exception {
    try (ImageBuilder builder = new ImageBuilder(base, work)) {
      builder.setGzipLevel(level);
      BuiltImage image = builder.build(request(List.of(files, code("def f(): pass\n"))));
      LayoutCheck.image(builder.layoutDir(), "kiln/udf:c");
      return image.layers().get(1);
    }
  }

  /** The Jib entries ImageBuilder makes for the file layer (sorted, modes, fixed times). */
  private com.google.common.collect.ImmutableList<
          com.google.cloud.tools.jib.api.buildplan.FileEntry>
      entries(Path work) {
    List<com.google.cloud.tools.jib.api.buildplan.FileEntry> out = new ArrayList<>();
    files.files().stream()
        .sorted(java.util.Comparator.comparing(LayerFile::pathInImage))
        .forEach(
            f ->
                out.add(
                    new com.google.cloud.tools.jib.api.buildplan.FileEntry(
                        f.source(),
                        com.google.cloud.tools.jib.api.buildplan.AbsoluteUnixPath.get(
                            f.pathInImage()),
                        com.google.cloud.tools.jib.api.buildplan.FilePermissions.fromOctalString(
                            String.format("%03o", f.mode())),
                        com.google.cloud.tools.jib.api.buildplan.FileEntriesLayer
                            .DEFAULT_MODIFICATION_TIME)));
    return com.google.common.collect.ImmutableList.copyOf(out);
  }

  private static long count(Path dir) throws IOException {
    try (Stream<Path> s = Files.list(dir)) {
      return s.count();
    }
  }

  private static LayerSpec code(String code) {
    return new LayerSpec(
        "code",
        List.of(
            LayerFile.ofBytes("/kiln/udf/udf.py", code.getBytes(StandardCharsets.UTF_8), 0644)));
  }

  private static ImageRequest request(List<LayerSpec> layers) {
    return new ImageRequest(
        "kiln/udf:c", layers, List.of("/usr/bin/python3"), List.of(), Map.of(), "/", Map.of());
  }
}
