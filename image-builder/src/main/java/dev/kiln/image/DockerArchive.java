package dev.kiln.image;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.cache.Digest;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarFile;

/**
 * What a {@code docker save} archive holds, read from its {@code manifest.json} and config without
 * touching the layer data: {@link TarFile} seeks over the layers, so this costs milliseconds even
 * for a large base image.
 *
 * @param path the archive
 * @param configDigest sha256 of the config bytes as stored (Docker's image id)
 * @param diffIds the config's {@code rootfs.diff_ids}, base first
 * @param labels the config's labels
 * @param stamp the file's size and modification time when it was read, to notice a replaced file
 */
record DockerArchive(
    Path path,
    Digest configDigest,
    List<Digest> diffIds,
    Map<String, String> labels,
    String stamp) {
  private static final ObjectMapper JSON = new ObjectMapper();

  DockerArchive {
    diffIds = List.copyOf(diffIds);
    labels = Map.copyOf(labels);
  }

  static DockerArchive read(Path path) throws IOException {
    String stamp = stamp(path);
    try (TarFile tar = new TarFile(path)) {
      Map<String, TarArchiveEntry> entries = new HashMap<>();
      for (TarArchiveEntry entry : tar.getEntries()) {
        entries.put(normalize(entry.getName()), entry);
      }
      TarArchiveEntry manifestEntry = entries.get("manifest.json");
      if (manifestEntry == null) {
        throw new IOException(
            path
                + " is not a docker-save archive (it has no manifest.json); build one with"
                + " bin/build-base-image or 'docker save'");
      }
      JsonNode manifest = readJson(tar, manifestEntry);
      if (!manifest.isArray() || manifest.isEmpty() || !manifest.get(0).hasNonNull("Config")) {
        throw new IOException(
            path + ": manifest.json does not name a config; the archive is damaged");
      }
      String configName = normalize(manifest.get(0).get("Config").asText());
      TarArchiveEntry configEntry = entries.get(configName);
      if (configEntry == null) {
        throw new IOException(
            path + ": manifest.json names config " + configName + ", which is missing");
      }
      byte[] configBytes;
      try (InputStream in = tar.getInputStream(configEntry)) {
        configBytes = in.readAllBytes();
      }
      JsonNode config = JSON.readTree(configBytes);
      List<Digest> diffIds = new ArrayList<>();
      for (JsonNode id : config.path("rootfs").path("diff_ids")) {
        diffIds.add(Digest.parse(id.asText()));
      }
      return new DockerArchive(path, Digest.of(configBytes), diffIds, labels(config), stamp);
    }
  }

  /** Size and modification time of the file: when they change, the file was replaced. */
  static String stamp(Path path) throws IOException {
    BasicFileAttributes attributes = Files.readAttributes(path, BasicFileAttributes.class);
    // Full precision (nanoseconds on ext4, tmpfs, xfs) and the file's identity: a rewrite within
    // the same millisecond, or a new file moved into place, still changes the stamp.
    return attributes.size()
        + "@"
        + attributes.lastModifiedTime().toInstant()
        + "#"
        + attributes.fileKey();
  }

  /** The labels of an image config ({@code config.Labels}); empty when it has none. */
  static Map<String, String> labels(JsonNode config) {
    Map<String, String> labels = new HashMap<>();
    config
        .path("config")
        .path("Labels")
        .properties()
        .forEach(e -> labels.put(e.getKey(), e.getValue().asText()));
    return labels;
  }

  private static JsonNode readJson(TarFile tar, TarArchiveEntry entry) throws IOException {
    try (InputStream in = tar.getInputStream(entry)) {
      return JSON.readTree(in);
    }
  }

  /** {@code tar -C dir .} names entries {@code ./x}; {@code docker save} names them {@code x}. */
  private static String normalize(String name) {
    return name.startsWith("./") ? name.substring(2) : name;
  }
}
