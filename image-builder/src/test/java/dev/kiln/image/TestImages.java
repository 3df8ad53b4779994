package dev.kiln.image;

import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.cache.Digest;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.archivers.tar.TarFile;

/** Base images and requests shared by the tests. */
final class TestImages {
  private static final ObjectMapper JSON = new ObjectMapper();

  private TestImages() {}

  /**
   * The real Python base image archive: {@code KILN_BASE_IMAGE} (system property or environment),
   * else {@code ${KILN_CACHE_DIR:-$HOME/.cache/kiln}/base/debian-bookworm-python3.tar}.
   */
  /** An image of {@code layers} over the base, with no command, variables or labels. */
  static ImageRequest request(String name, List<LayerSpec> layers) {
    return new ImageRequest(name, layers, List.of(), List.of(), Map.of(), "/", Map.of());
  }

  static Path baseArchive() {
    String configured = System.getProperty("KILN_BASE_IMAGE", System.getenv("KILN_BASE_IMAGE"));
    Path archive;
    if (configured != null && !configured.isBlank()) {
      archive = Path.of(configured);
    } else {
      String cache = System.getenv("KILN_CACHE_DIR");
      Path cacheDir =
          cache != null && !cache.isBlank()
              ? Path.of(cache)
              : Path.of(System.getProperty("user.home"), ".cache", "kiln");
      archive = cacheDir.resolve("base/debian-bookworm-python3.tar");
    }
    if (!Files.isRegularFile(archive)) {
      fail(
          "base image archive "
              + archive
              + " is missing: run bin/build-base-image (as root), or point KILN_BASE_IMAGE at a"
              + " docker-save archive");
    }
    return archive;
  }

  /**
   * Writes a small docker-save archive the way bin/build-base-image does (one gzip layer, outer tar
   * made with {@code tar -C dir .}, so with a {@code ./} entry), holding the given files.
   */
  static Path tinyBaseArchive(Path out, Map<String, String> files, Map<String, String> labels)
      throws IOException {
    ByteArrayOutputStream layer = new ByteArrayOutputStream();
    try (TarArchiveOutputStream tar = new TarArchiveOutputStream(layer)) {
      tar.putArchiveEntry(directory("./"));
      tar.closeArchiveEntry();
      for (Map.Entry<String, String> file : new java.util.TreeMap<>(files).entrySet()) {
        byte[] content = file.getValue().getBytes(StandardCharsets.UTF_8);
        TarArchiveEntry entry = new TarArchiveEntry("./" + file.getKey());
        entry.setSize(content.length);
        entry.setMode(0100755);
        entry.setModTime(0);
        tar.putArchiveEntry(entry);
        tar.write(content);
        tar.closeArchiveEntry();
      }
    }
    byte[] layerTar = layer.toByteArray();
    Digest diffId = Digest.of(layerTar);
    ByteArrayOutputStream gz = new ByteArrayOutputStream();
    try (OutputStream gzip = new GZIPOutputStream(gz)) {
      gzip.write(layerTar);
    }

    ObjectNode config = JSON.createObjectNode();
    config.put("architecture", "amd64");
    config.put("os", "linux");
    ObjectNode c = config.putObject("config");
    c.putArray("Env").add("PATH=/usr/bin:/bin").add("LANG=C.UTF-8");
    c.putArray("Cmd").add("python3");
    ObjectNode l = c.putObject("Labels");
    labels.forEach(l::put);
    ObjectNode rootfs = config.putObject("rootfs");
    rootfs.put("type", "layers");
    rootfs.putArray("diff_ids").add(diffId.toString());
    byte[] configBytes = JSON.writeValueAsBytes(config);
    String configName = Digest.of(configBytes).hex() + ".json";
    String layerName = diffId.hex() + ".tar.gz";
    byte[] manifest =
        JSON.writeValueAsBytes(
            List.of(
                Map.of(
                    "Config", configName,
                    "RepoTags", List.of("kiln/base:tiny"),
                    "Layers", List.of(layerName))));

    Files.createDirectories(out.getParent());
    try (TarArchiveOutputStream tar = new TarArchiveOutputStream(Files.newOutputStream(out))) {
      tar.putArchiveEntry(directory("./"));
      tar.closeArchiveEntry();
      put(tar, "./" + configName, configBytes);
      put(tar, "./" + layerName, gz.toByteArray());
      put(tar, "./manifest.json", manifest);
    }
    return out;
  }

  private static TarArchiveEntry directory(String name) {
    TarArchiveEntry dir = new TarArchiveEntry(name, TarArchiveEntry.LF_DIR);
    dir.setMode(040755);
    dir.setModTime(0);
    return dir;
  }

  private static void put(TarArchiveOutputStream tar, String name, byte[] content)
      throws IOException {
    TarArchiveEntry entry = new TarArchiveEntry(name);
    entry.setSize(content.length);
    entry.setMode(0100644);
    entry.setModTime(0);
    tar.putArchiveEntry(entry);
    tar.write(content);
    tar.closeArchiveEntry();
  }

  /** The gzip layer of a one-layer docker-save archive: its digest and diff_id. */
  record ArchiveLayer(Digest digest, Digest diffId) {}

  /** Reads the layer of a one-layer docker-save archive and hashes it, compressed and not. */
  static ArchiveLayer onlyLayer(Path archive) throws IOException {
    try (TarFile tar = new TarFile(archive)) {
      for (TarArchiveEntry e : tar.getEntries()) {
        if (e.getName().endsWith(".tar.gz")) {
          Digest digest;
          try (InputStream in = tar.getInputStream(e)) {
            digest = Digest.of(in);
          }
          try (InputStream in = new GZIPInputStream(tar.getInputStream(e), 1 << 16)) {
            return new ArchiveLayer(digest, Digest.of(in));
          }
        }
      }
    }
    throw new AssertionError("no gzip layer in " + archive);
  }

  /** A UDF-shaped request: a library layer and a code layer. */
  static ImageRequest udf(String name, byte[] library, String code) {
    return new ImageRequest(
        name,
        List.of(
            new LayerSpec(
                "library", List.of(LayerFile.ofBytes("/kiln/lib/library.bin", library, 0644))),
            new LayerSpec(
                "code",
                List.of(
                    LayerFile.ofBytes(
                        "/kiln/udf/udf.py", code.getBytes(StandardCharsets.UTF_8), 0644),
                    LayerFile.ofBytes(
                        "/kiln/udf/run.sh",
                        "#!/bin/sh\nexec python3 /kiln/udf/udf.py\n"
                            .getBytes(StandardCharsets.UTF_8),
                        0755)))),
        List.of("/usr/bin/python3", "/kiln/udf/udf.py"),
        List.of("--serve"),
        Map.of("KILN_UDF", name, "PYTHONUNBUFFERED", "1", "LANG", "C"),
        "/kiln/udf",
        Map.of("dev.kiln.udf", name, "dev.kiln.runner", "1"));
  }
}
