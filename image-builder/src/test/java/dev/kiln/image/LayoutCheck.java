package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.cache.Digest;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import java.util.zip.GZIPInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;

/** Checks an OCI image layout from the files alone, independently of the code that wrote it. */
final class LayoutCheck {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** What the layout says about one image. */
  record Image(Digest manifestDigest, JsonNode manifest, JsonNode config, List<Path> layerBlobs) {}

  /** One entry of a layer tar. */
  record Entry(String name, int mode, long uid, long gid, long mtimeSeconds, byte[] content) {}

  private LayoutCheck() {}

  /**
   * Follows index.json → manifest → config and layers for the image {@code name}, checking the
   * layout on the way: the oci-layout marker, media types, sizes, that every blob in the layout
   * hashes to its name, and that each layer's uncompressed sha256 is its diff_id.
   */
  static Image image(Path layout, String name) throws IOException {
    assertThat(
            JSON.readTree(layout.resolve("oci-layout").toFile())
                .path("imageLayoutVersion")
                .asText())
        .isEqualTo("1.0.0");
    checkAllBlobs(layout);

    JsonNode index = JSON.readTree(layout.resolve("index.json").toFile());
    assertThat(index.path("schemaVersion").asInt()).isEqualTo(2);
    JsonNode entry = null;
    for (JsonNode m : index.path("manifests")) {
      if (name.equals(m.path("annotations").path("org.opencontainers.image.ref.name").asText())) {
        assertThat(entry).as("one index entry named %s", name).isNull();
        entry = m;
      }
    }
    assertThat(entry).as("index.json entry for %s", name).isNotNull();
    assertThat(entry.path("mediaType").asText())
        .isEqualTo("application/vnd.oci.image.manifest.v1+json");
    Digest manifestDigest = Digest.parse(entry.path("digest").asText());
    Path manifestFile = blob(layout, manifestDigest);
    assertThat(Files.size(manifestFile)).isEqualTo(entry.path("size").asLong());

    JsonNode manifest = JSON.readTree(manifestFile.toFile());
    assertThat(manifest.path("schemaVersion").asInt()).isEqualTo(2);
    assertThat(manifest.path("mediaType").asText())
        .isEqualTo("application/vnd.oci.image.manifest.v1+json");
    JsonNode configDescriptor = manifest.path("config");
    assertThat(configDescriptor.path("mediaType").asText())
        .isEqualTo("application/vnd.oci.image.config.v1+json");
    Path configFile = blob(layout, Digest.parse(configDescriptor.path("digest").asText()));
    assertThat(Files.size(configFile)).isEqualTo(configDescriptor.path("size").asLong());
    JsonNode config = JSON.readTree(configFile.toFile());

    JsonNode diffIds = config.path("rootfs").path("diff_ids");
    JsonNode layers = manifest.path("layers");
    assertThat(layers.size()).isEqualTo(diffIds.size()).isPositive();
    List<Path> blobs = new ArrayList<>();
    for (int i = 0; i < layers.size(); i++) {
      JsonNode layer = layers.get(i);
      String mediaType = layer.path("mediaType").asText();
      assertThat(mediaType).isIn(LayerBlob.TAR_GZIP, LayerBlob.TAR);
      Path file = blob(layout, Digest.parse(layer.path("digest").asText()));
      assertThat(Files.size(file)).isEqualTo(layer.path("size").asLong());
      assertThat(gzipped(file))
          .as("layer %d is compressed as its media type %s says", i, mediaType)
          .isEqualTo(mediaType.equals(LayerBlob.TAR_GZIP));
      try (InputStream in = tar(file)) {
        assertThat(Digest.of(in).toString())
            .as("diff_id of layer %d", i)
            .isEqualTo(diffIds.get(i).asText());
      }
      blobs.add(file);
    }
    return new Image(manifestDigest, manifest, config, blobs);
  }

  /** Every file under blobs/sha256 hashes to its own name. */
  static void checkAllBlobs(Path layout) throws IOException {
    try (Stream<Path> files = Files.list(layout.resolve("blobs/sha256"))) {
      for (Path file : files.toList()) {
        try (InputStream in = Files.newInputStream(file)) {
          assertThat(Digest.of(in).hex())
              .as("blob %s", file)
              .isEqualTo(file.getFileName().toString());
        }
      }
    }
  }

  static Path blob(Path layout, Digest digest) {
    Path file = layout.resolve("blobs/sha256").resolve(digest.hex());
    assertThat(file).as("blob %s", digest).isRegularFile();
    return file;
  }

  /** Whether a blob starts with gzip's magic bytes. */
  static boolean gzipped(Path blob) throws IOException {
    try (InputStream in = Files.newInputStream(blob)) {
      byte[] magic = in.readNBytes(2);
      return magic.length == 2 && (magic[0] & 0xff) == 0x1f && (magic[1] & 0xff) == 0x8b;
    }
  }

  /** The tar in a layer blob, plain or gzip-compressed. */
  static InputStream tar(Path layerBlob) throws IOException {
    InputStream in = Files.newInputStream(layerBlob);
    return gzipped(layerBlob) ? new GZIPInputStream(in) : in;
  }

  /** The entries of a layer blob (plain or gzip tar), in order. */
  static List<Entry> entries(Path layerBlob) throws IOException {
    List<Entry> out = new ArrayList<>();
    try (TarArchiveInputStream tar = new TarArchiveInputStream(tar(layerBlob))) {
      for (TarArchiveEntry e = tar.getNextEntry(); e != null; e = tar.getNextEntry()) {
        out.add(
            new Entry(
                e.getName(),
                e.getMode(),
                e.getLongUserId(),
                e.getLongGroupId(),
                e.getLastModifiedTime().toInstant().getEpochSecond(),
                e.isDirectory() ? new byte[0] : tar.readAllBytes()));
      }
    }
    return out;
  }
}
