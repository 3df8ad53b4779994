package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Builds over the real Python base image archive (bin/build-base-image, about 41 MB) and measures
 * build times: the cold start of a UDF includes one of these builds.
 */
class ImageBuilderIT {
  /** Two small layers, as a UDF without packages has: ~50 KB of library and the code. */
  private static final byte[] LIBRARY = ImageBuilderTest.randomBytes(50_000, 3);

  @TempDir Path tmp;

  @Test
  void buildsOverTheRealBaseImageReproduciblyAndFast() throws Exception {
    Path archive = TestImages.baseArchive();
    BaseImage base = BaseImage.parse(archive.toString());
    TestImages.ArchiveLayer baseLayer = TestImages.onlyLayer(archive);

    BuiltImage first;
    long cold;
    List<Long> warm = new ArrayList<>();
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("one"))) {
      long start = System.nanoTime();
      first = builder.build(TestImages.udf("kiln/udf:first", LIBRARY, "def f(x):\n    return x\n"));
      cold = System.nanoTime() - start;

      LayoutCheck.Image image = LayoutCheck.image(builder.layoutDir(), "kiln/udf:first");
      assertThat(image.manifestDigest()).isEqualTo(first.manifestDigest());
      assertThat(first.layers()).hasSize(3);
      assertThat(first.layers().get(0).digest()).isEqualTo(baseLayer.digest());
      assertThat(first.layers().get(0).diffId()).isEqualTo(baseLayer.diffId());
      assertThat(
              image.config().path("config").path("Labels").path("dev.kiln.python.version").asText())
          .isEqualTo(base.labels().get("dev.kiln.python.version"))
          .isNotEmpty();
      assertThat(first.env()).contains("PYTHONDONTWRITEBYTECODE=1", "LANG=C");

      // Warm: a new code layer each time, as each new UDF brings.
      for (int i = 0; i < 10; i++) {
        start = System.nanoTime();
        BuiltImage next =
            builder.build(
                TestImages.udf(
                    "kiln/udf:warm" + i, LIBRARY, "def f(x):\n    return x + " + i + "\n"));
        warm.add(System.nanoTime() - start);
        assertThat(next.layers().subList(0, 2)).isEqualTo(first.layers().subList(0, 2));
      }
    }

    // A fresh work directory in this (now warm) JVM: Jib's caches are cold again.
    long coldCachesWarmJvm;
    BuiltImage again;
    try (ImageBuilder fresh =
        new ImageBuilder(BaseImage.parse(archive.toString()), tmp.resolve("two"))) {
      long start = System.nanoTime();
      again = fresh.build(TestImages.udf("kiln/udf:first", LIBRARY, "def f(x):\n    return x\n"));
      coldCachesWarmJvm = System.nanoTime() - start;
    }
    assertThat(again.manifestDigest()).isEqualTo(first.manifestDigest());

    Collections.sort(warm);
    long median = warm.get(warm.size() / 2);
    System.out.printf(
        "ImageBuilderIT timings over %s: first build in this test (empty work dir; the JVM is"
            + " cold only if this test ran first) %d ms; empty work dir in a warm JVM %d ms;"
            + " warm builds min %d / median %d / max %d ms%n",
        archive,
        ms(cold),
        ms(coldCachesWarmJvm),
        ms(warm.get(0)),
        ms(median),
        ms(warm.get(warm.size() - 1)));
    // Printed, not asserted: speed goals live in the benchmarks (bin/bench cold-start).
  }

  private static long ms(long nanos) {
    return nanos / 1_000_000;
  }
}
