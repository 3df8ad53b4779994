package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.cache.Digest;
import java.io.IOException;
import java.io.InputStream;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class BaseImageTest {
  @TempDir Path tmp;

  @Test
  void archiveReferences() throws IOException {
    assertThat(BaseImage.parse("docker-archive:/srv/base.tar").reference())
        .isEqualTo("docker-archive:/srv/base.tar");
    assertThat(BaseImage.parse("/srv/base.tar").isArchive()).isTrue();
    assertThat(BaseImage.parse("/srv/base.tar"))
        .isEqualTo(BaseImage.parse("docker-archive:/srv/base.tar"));
    assertThat(BaseImage.parse("base/python.tar").reference())
        .isEqualTo("docker-archive:" + Path.of("base/python.tar").toAbsolutePath());
    Path noExtension = Files.writeString(tmp.resolve("python-base"), "x");
    assertThat(BaseImage.parse(noExtension.toString()).isArchive()).isTrue();
  }

  @Test
  void registryReferences() throws IOException {
    BaseImage local = BaseImage.parse("localhost:5000/kiln/base:1");
    assertThat(local.isArchive()).isFalse();
    assertThat(local.reference()).isEqualTo("localhost:5000/kiln/base:1");
    assertThat(BaseImage.parse("registry:localhost:5000/kiln/base:1")).isEqualTo(local);
    BaseImage hub = BaseImage.parse("python:3.12-slim");
    assertThat(hub.isArchive()).isFalse();
    assertThat(hub.reference()).contains("python:3.12-slim");
  }

  @Test
  void pinnedRegistryReferenceNeedsNoNetwork() throws IOException {
    String digest = Digest.of("manifest").toString();
    int closedPort;
    try (ServerSocket socket = new ServerSocket(0)) {
      closedPort = socket.getLocalPort();
    }
    BaseImage pinned = BaseImage.parse("localhost:" + closedPort + "/kiln/base@" + digest);
    assertThat(pinned.digest()).isEqualTo(digest);
  }

  @Test
  void nonsenseIsRejectedWithAHint() {
    for (String bad :
        new String[] {
          "", "   ", "docker-archive:", "Not An Image!", "scratch", "registry:", "kiln/base:bad tag"
        }) {
      assertThatThrownBy(() -> BaseImage.parse(bad))
          .as(bad)
          .isInstanceOf(IllegalArgumentException.class)
          .hasMessageContaining("base image");
    }
  }

  @Test
  void archiveDigestIsItsConfigDigestAndLabelsComeFromTheConfig() throws IOException {
    Path archive =
        TestImages.tinyBaseArchive(
            tmp.resolve("tiny.tar"),
            Map.of("usr/bin/python3", "#!/bin/sh\n"),
            Map.of("dev.kiln.python.version", "3.11.2"));
    BaseImage base = BaseImage.parse(archive.toString());

    assertThat(base.digest()).isEqualTo(configDigestInside(archive).toString());
    assertThat(base.labels()).containsExactly(Map.entry("dev.kiln.python.version", "3.11.2"));
  }

  @Test
  void missingArchiveSaysHowToCreateIt() {
    BaseImage base = BaseImage.parse("docker-archive:" + tmp.resolve("absent.tar"));
    assertThatThrownBy(base::digest)
        .isInstanceOf(IOException.class)
        .hasMessageContaining("absent.tar")
        .hasMessageContaining("bin/build-base-image");
  }

  @Test
  void realBaseArchiveHasThePythonVersionLabel() throws IOException {
    BaseImage base = BaseImage.parse(TestImages.baseArchive().toString());
    assertThat(base.labels()).containsKey("dev.kiln.python.version");
    assertThat(base.digest()).isEqualTo(configDigestInside(TestImages.baseArchive()).toString());
  }

  /** The digest of the config file inside a docker-save archive, computed here independently. */
  private static Digest configDigestInside(Path archive) throws IOException {
    try (TarFile tar = new TarFile(archive)) {
      for (TarArchiveEntry e : tar.getEntries()) {
        String name = e.getName().replaceFirst("^\\./", "");
        if (name.endsWith(".json") && !name.equals("manifest.json")) {
          try (InputStream in = tar.getInputStream(e)) {
            return Digest.of(in);
          }
        }
      }
    }
    throw new AssertionError("no config in " + archive);
  }
}
