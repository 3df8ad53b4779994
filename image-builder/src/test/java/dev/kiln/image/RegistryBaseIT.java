package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.tuple;

import com.google.cloud.tools.jib.api.Containerizer;
import com.google.cloud.tools.jib.api.DockerDaemonImage;
import com.google.cloud.tools.jib.api.Jib;
import com.google.cloud.tools.jib.api.JibContainer;
import com.google.cloud.tools.jib.api.RegistryImage;
import dev.kiln.base.KilnException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Builds over a base image pulled from a real registry running on loopback. */
class RegistryBaseIT {
  private static final byte[] LIBRARY = ImageBuilderTest.randomBytes(50_000, 5);

  @TempDir Path tmp;

  @Test
  void buildsOverABaseImageFromARegistryAndKeepsBuildingWhenItIsGone() throws Exception {
    Path archive = TestImages.baseArchive();
    BaseImage archiveBase = BaseImage.parse(archive.toString());
    TestImages.ArchiveLayer archiveLayer = TestImages.onlyLayer(archive);
    ImageRequest request = TestImages.udf("kiln/udf:reg", LIBRARY, "def f(x):\n    return x\n");

    LocalRegistry registry = LocalRegistry.start(tmp.resolve("registry"));
    try (registry) {
      String reference = "localhost:" + registry.port() + "/kiln/base:test";

      // Push the base archive with Jib: archive in, registry image out, plain http allowed.
      ArchiveDockerClient daemon = new ArchiveDockerClient(DockerArchive.read(archive));
      JibContainer pushed =
          Jib.from(daemon, DockerDaemonImage.named(daemon.imageReference()))
              .containerize(
                  Containerizer.to(RegistryImage.named(reference))
                      .setAllowInsecureRegistries(true)
                      .setBaseImageLayersCache(tmp.resolve("push/base"))
                      .setApplicationLayersCache(tmp.resolve("push/application")));

      BaseImage base = BaseImage.parse(reference);
      assertThat(base.digest()).isEqualTo(pushed.getDigest().toString());
      assertThat(base.labels()).isEqualTo(archiveBase.labels());

      try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("work"))) {
        builder.setAllowInsecureRegistries(true);
        long start = System.nanoTime();
        BuiltImage fromRegistry = builder.build(request);
        long cold = System.nanoTime() - start;
        LayoutCheck.image(builder.layoutDir(), "kiln/udf:reg");

        // The same base layer as the archive's, and the same layers above it as a build over
        // the archive itself.
        assertThat(fromRegistry.layers().get(0).digest()).isEqualTo(archiveLayer.digest());
        assertThat(fromRegistry.layers().get(0).diffId()).isEqualTo(archiveLayer.diffId());
        try (ImageBuilder overArchive =
            new ImageBuilder(archiveBase, tmp.resolve("archive-work"))) {
          BuiltImage fromArchive = overArchive.build(request);
          assertThat(fromRegistry.layers())
              .extracting(ImageLayer::digest, ImageLayer::diffId)
              .containsExactlyElementsOf(
                  fromArchive.layers().stream().map(l -> tuple(l.digest(), l.diffId())).toList());
        }

        // A tag the registry does not have.
        BaseImage missingTag = BaseImage.parse("localhost:" + registry.port() + "/kiln/base:nope");
        try (ImageBuilder wrong = new ImageBuilder(missingTag, tmp.resolve("wrong"))) {
          assertThatThrownBy(() -> wrong.build(request))
              .isInstanceOf(KilnException.class)
              .hasMessageContaining("kiln/base:nope")
              .hasMessageContaining("check the");
        }

        registry.close();
        assertThat(registry.isRunning()).isFalse();

        // The base is pinned by digest and in Jib's cache: warm builds need no registry.
        start = System.nanoTime();
        BuiltImage offline = builder.build(TestImages.udf("kiln/udf:offline", LIBRARY, "X = 1\n"));
        long warm = System.nanoTime() - start;
        assertThat(offline.layers().get(0)).isEqualTo(fromRegistry.layers().get(0));
        System.out.printf(
            "RegistryBaseIT timings: first build over %s %d ms; warm build with the registry"
                + " stopped %d ms%n",
            reference, cold / 1_000_000, warm / 1_000_000);
      }

      // Without the registry, a base image that was never resolved cannot be.
      try (ImageBuilder fresh =
          new ImageBuilder(BaseImage.parse(reference), tmp.resolve("fresh"))) {
        fresh.setAllowInsecureRegistries(true);
        assertThatThrownBy(() -> fresh.build(request))
            .isInstanceOf(KilnException.class)
            .hasMessageContaining("localhost:" + registry.port())
            .hasMessageContaining("cannot be reached");
      }
    }
    assertThat(registry.isRunning()).isFalse();
  }
}
