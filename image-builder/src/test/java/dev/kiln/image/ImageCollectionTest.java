package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Collecting unused images: what is kept or recently used stays and stays whole, the rest goes with
 * the blobs only it held, a dry run changes nothing, and a build racing a collection that would
 * remove everything never fails and never leaves an image with missing blobs.
 */
class ImageCollectionTest {
  @TempDir Path tmp;
  private BaseImage base;

  @BeforeEach
  void tinyBase() throws Exception {
    Path archive =
        TestImages.tinyBaseArchive(
            tmp.resolve("base/tiny.tar"),
            Map.of("usr/bin/python3", "#!/bin/sh\necho python\n"),
            Map.of("dev.kiln.python.version", "3.11.2", "dev.kiln.base", "tiny"));
    base = BaseImage.parse(archive.toString());
  }

  private static ImageRequest udf(String name, String code) {
    return TestImages.udf(name, ("lib of " + name).getBytes(), code);
  }

  /** Makes every file of the layout look written an hour ago (time is the files' own). */
  private static void ageAll(Path dir) throws Exception {
    FileTime old = FileTime.from(Instant.now().minusSeconds(3600));
    try (Stream<Path> all = Files.walk(dir)) {
      for (Path p : all.toList()) {
        Files.setLastModifiedTime(p, old);
      }
    }
  }

  private static long blobCount(Path layout) throws Exception {
    try (Stream<Path> s = Files.list(layout.resolve("blobs/sha256"))) {
      return s.count();
    }
  }

  @Test
  void unusedImagesGoWithTheirOwnBlobsAndKeptOrRecentOnesStayWhole() throws Exception {
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      builder.build(udf("kiln/udf:old", "def f(x):\n    return 1\n"));
      builder.build(udf("kiln/udf:kept", "def f(x):\n    return 2\n"));
      builder.build(udf("kiln/udf:used", "def f(x):\n    return 3\n"));
      builder.build(udf("kiln/base-probe", "def f(x):\n    return 4\n"));
      ageAll(tmp.resolve("work"));
      assertThat(builder.find("kiln/udf:used")).isPresent(); // marks it as used now
      long blobsBefore = blobCount(builder.layoutDir());
      Instant cutoff = Instant.now().minusSeconds(60);

      ImageBuilder.Collected dry =
          builder.collect(BuildImage.IMAGE_PREFIX, Set.of("kiln/udf:kept")::contains, cutoff, true);
      assertThat(dry.images()).containsExactly("kiln/udf:old");
      assertThat(blobCount(builder.layoutDir()))
          .as("a dry run deletes nothing")
          .isEqualTo(blobsBefore);
      assertThat(builder.find("kiln/udf:old")).isPresent();
      ageAll(tmp.resolve("work/oci/blobs"));
      builder.find("kiln/udf:used");

      ImageBuilder.Collected done =
          builder.collect(
              BuildImage.IMAGE_PREFIX, Set.of("kiln/udf:kept")::contains, cutoff, false);
      assertThat(done.images()).containsExactly("kiln/udf:old");
      assertThat(done.files()).isPositive();
      assertThat(done.bytes()).isPositive();
      assertThat(builder.find("kiln/udf:old")).isEmpty();
      for (String name : List.of("kiln/udf:kept", "kiln/udf:used", "kiln/base-probe")) {
        assertThat(builder.find(name)).as(name + " stays, every blob of it").isPresent();
        LayoutCheck.image(builder.layoutDir(), name); // fails on a missing blob
      }
      // The base layer is shared: it stays while any image uses it.
      assertThat(blobCount(builder.layoutDir())).isLessThan(blobsBefore);

      // What was collected is built again when asked for.
      builder.build(udf("kiln/udf:old", "def f(x):\n    return 1\n"));
      LayoutCheck.image(builder.layoutDir(), "kiln/udf:old");
    }
  }

  @Test
  void aBuildRacingACollectionOfEverythingNeverFails() throws Exception {
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
      AtomicBoolean done = new AtomicBoolean();
      AtomicInteger collections = new AtomicInteger();
      CompletableFuture<Void> collector =
          CompletableFuture.runAsync(
              () -> {
                while (!done.get()) {
                  try {
                    // Everything written before a second from now goes, unless a build holds it.
                    builder.collect(
                        BuildImage.IMAGE_PREFIX, n -> false, Instant.now().plusSeconds(1), false);
                    collections.incrementAndGet();
                  } catch (Exception e) {
                    throw new IllegalStateException(e);
                  }
                }
              });
      List<BuiltImage> built = new ArrayList<>();
      try {
        for (int i = 0; i < 12; i++) {
          // The same layers each time: the race is on blobs a build finds present.
          BuiltImage image = builder.build(udf("kiln/udf:same", "def f(x):\n    return 0\n"));
          built.add(image);
        }
      } finally {
        done.set(true);
      }
      collector.join();
      assertThat(collections.get()).as("the collector ran meanwhile").isPositive();
      assertThat(built).hasSize(12);
      assertThat(built.stream().map(BuiltImage::manifestDigest).distinct()).hasSize(1);
      builder.build(udf("kiln/udf:same", "def f(x):\n    return 0\n"));
      LayoutCheck.image(builder.layoutDir(), "kiln/udf:same");
    }
  }
}
