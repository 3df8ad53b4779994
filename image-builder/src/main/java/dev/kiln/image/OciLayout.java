package dev.kiln.image;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.cache.Digest;
import dev.kiln.cache.LocalBlobStore;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Predicate;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An OCI image layout on local disk ({@code oci-layout}, {@code index.json}, {@code
 * blobs/sha256/...}) that images are added to by name.
 *
 * <p>Blobs go through a {@link LocalBlobStore}, so each is written once, atomically and verified
 * against its digest; a blob that is already present is never rewritten. {@code index.json} is
 * replaced atomically, and its read-modify-write is serialised both between threads (one lock per
 * layout directory in this JVM) and between processes (a file lock next to the layout), so
 * concurrent builds never lose each other's entries.
 */
final class OciLayout {
  private static final Logger log = LoggerFactory.getLogger(OciLayout.class);
  static final String REF_NAME = "org.opencontainers.image.ref.name";
  static final String INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json";
  static final String MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json";
  private static final String BLOB_PREFIX = "blobs/sha256/";
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final ConcurrentHashMap<Path, ReentrantLock> INDEX_LOCKS =
      new ConcurrentHashMap<>();

  private final Path dir;
  private final LocalBlobStore blobs;
  private final Path index;
  private final Path lockFile;

  OciLayout(Path dir) throws IOException {
    Files.createDirectories(dir);
    this.dir = dir.toRealPath();
    // Temporary files live beside the layout, not in blobs/, which the OCI spec reserves for
    // algorithm directories.
    this.blobs = new LocalBlobStore(this.dir.resolve("blobs"), this.dir.resolveSibling("oci-tmp"));
    this.index = this.dir.resolve("index.json");
    this.lockFile = this.dir.resolveSibling(this.dir.getFileName() + ".lock");
    Path marker = this.dir.resolve("oci-layout");
    if (!Files.exists(marker)) {
      writeAtomically(
          marker, "{\"imageLayoutVersion\":\"1.0.0\"}".getBytes(StandardCharsets.UTF_8));
    }
    if (!Files.exists(index)) {
      withIndexLock(
          () -> {
            if (!Files.exists(index)) {
              writeIndex(emptyIndex());
            }
          });
    }
  }

  Path dir() {
    return dir;
  }

  /** Where a blob of the layout is stored. */
  Path blob(Digest digest) {
    return blobs.path(digest);
  }

  /** Writes an OCI image tarball to a stream, as Jib's {@code ImageTarball.writeTo} does. */
  interface TarballWriter {
    void writeTo(OutputStream out) throws IOException;
  }

  /**
   * Stores the blobs of an OCI-format image tarball (as Jib's {@code ImageTarball} writes it) and
   * returns its manifest's digest; {@link #commit} then names the image. The tarball is never
   * stored: blobs already present are skipped as they stream past, new ones are written once
   * through a file in {@code scratch}.
   */
  Digest receive(TarballWriter tarball, Path scratch) throws IOException {
    try (OciTarballSink sink = new OciTarballSink(blobs, scratch)) {
      tarball.writeTo(sink);
      Digest manifestDigest = sink.finish();
      log.debug(
          "image {}: {} blobs written, {} already present",
          manifestDigest,
          sink.blobsWritten(),
          sink.blobsSkipped());
      return manifestDigest;
    }
  }

  /** Names the image with this manifest {@code name}, replacing any image of that name. */
  BuiltImage commit(String name, Digest manifestDigest) throws IOException {
    Optional<BuiltImage> image = read(name, manifestDigest);
    if (image.isEmpty()) {
      throw new IOException("image " + manifestDigest + " lacks blobs its manifest names");
    }
    tag(name, manifestDigest);
    touch(manifestDigest);
    return image.get();
  }

  /** What {@link #collect} removed, or would remove. */
  record Collected(List<String> images, int blobs, long bytes) {}

  /**
   * Removes from the index the images named {@code prefix...} that {@code keep} does not name and
   * that were last used (built or found) before {@code unusedBefore}, then every blob that no image
   * left in the index references and that was written or used before then. The index is rewritten
   * first (atomically) and blobs deleted after: a crash in between leaves only unreferenced blobs,
   * which the next collection removes; a lookup never finds an image whose blobs are gone (it would
   * be rebuilt if it did). With {@code dryRun} nothing changes.
   */
  Collected collect(String prefix, Predicate<String> keep, Instant unusedBefore, boolean dryRun)
      throws IOException {
    List<String> removed = new ArrayList<>();
    Set<Digest> referenced = new HashSet<>();
    int[] blobsRemoved = {0};
    long[] bytes = {0};
    withIndexLock(
        () -> {
          ObjectNode current = readIndex();
          ArrayNode kept = JSON.createArrayNode();
          for (JsonNode entry : current.path("manifests")) {
            String name = entry.path("annotations").path(REF_NAME).asText("");
            Digest manifest = Digest.parse(entry.path("digest").asText());
            if (name.startsWith(prefix)
                && !keep.test(name)
                && lastUsed(manifest).isBefore(unusedBefore)) {
              removed.add(name);
            } else {
              kept.add(entry);
              referenced.addAll(blobsOf(manifest));
            }
          }
          if (!dryRun && !removed.isEmpty()) {
            current.set("manifests", kept);
            writeIndex(current);
          }
          Path sha256 = dir.resolve(BLOB_PREFIX);
          if (!Files.isDirectory(sha256)) {
            return;
          }
          try (DirectoryStream<Path> files = Files.newDirectoryStream(sha256)) {
            for (Path f : files) {
              Digest d;
              try {
                d = Digest.parse("sha256:" + f.getFileName());
              } catch (IllegalArgumentException e) {
                continue; // not a blob
              }
              if (referenced.contains(d)
                  || !Files.getLastModifiedTime(f).toInstant().isBefore(unusedBefore)) {
                continue;
              }
              bytes[0] += Files.size(f);
              blobsRemoved[0]++;
              if (!dryRun) {
                Files.deleteIfExists(f);
              }
            }
          }
        });
    return new Collected(List.copyOf(removed), blobsRemoved[0], bytes[0]);
  }

  /** When the image with this manifest was last built or handed out (its manifest's time). */
  private Instant lastUsed(Digest manifest) throws IOException {
    Optional<Path> f = blobs.file(manifest);
    return f.isEmpty() ? Instant.MIN : Files.getLastModifiedTime(f.get()).toInstant();
  }

  /** The manifest, its config and its layers; only the manifest when it cannot be read. */
  private Set<Digest> blobsOf(Digest manifest) throws IOException {
    Set<Digest> out = new HashSet<>();
    out.add(manifest);
    Optional<JsonNode> m = readBlob(manifest);
    if (m.isEmpty()) {
      return out;
    }
    String config = m.get().path("config").path("digest").asText("");
    if (!config.isEmpty()) {
      out.add(Digest.parse(config));
    }
    for (JsonNode layer : m.get().path("layers")) {
      out.add(Digest.parse(layer.path("digest").asText()));
    }
    return out;
  }

  /** Marks the image with this manifest as used now, for {@link #collect}. */
  private void touch(Digest manifest) {
    try {
      Files.setLastModifiedTime(blobs.path(manifest), FileTime.from(Instant.now()));
    } catch (IOException e) {
      log.debug("cannot mark {} as used: {}", manifest, e.toString());
    }
  }

  /**
   * A new image: the one with this manifest, with built layers inserted below its top {@code
   * topLayers} layers (those Jib built, over the base), and returns the new manifest's digest. The
   * built layers' blobs are added to the layout (verified) unless present; each gets a history
   * entry like Jib's, with its name as the comment.
   */
  Digest insertLayers(Digest manifestDigest, int topLayers, List<LayerSpec> built)
      throws IOException {
    ObjectNode manifest = object(manifestDigest);
    Digest configDigest = Digest.parse(manifest.path("config").path("digest").asText());
    ObjectNode config = object(configDigest);
    if (!(manifest.get("layers") instanceof ArrayNode layers)
        || !(config.path("rootfs").get("diff_ids") instanceof ArrayNode diffIds)
        || !(config.get("history") instanceof ArrayNode history)
        || layers.size() != diffIds.size()
        || layers.size() < topLayers
        || history.size() < topLayers) {
      throw new IOException(
          "image " + manifestDigest + " from Jib does not have the layers and history expected");
    }
    int at = layers.size() - topLayers;
    int historyAt = history.size() - topLayers;
    for (int i = 0; i < built.size(); i++) {
      LayerSpec spec = built.get(i);
      LayerBlob blob = spec.blob();
      // A package layer's file is Kiln's own, written once: linked, not copied a second time.
      if (!blobs.link(blob.digest(), blob.file(), blob.size())) {
        try (InputStream in = Files.newInputStream(blob.file())) {
          blobs.put(blob.digest(), in);
        }
      }
      ObjectNode descriptor = JSON.createObjectNode();
      descriptor.put("mediaType", blob.mediaType());
      descriptor.put("digest", blob.digest().toString());
      descriptor.put("size", blob.size());
      layers.insert(at + i, descriptor);
      diffIds.insert(at + i, blob.diffId().toString());
      ObjectNode entry = JSON.createObjectNode();
      entry.put("created", "1970-01-01T00:00:00Z");
      entry.put("author", "Kiln");
      entry.put("created_by", ImageBuilder.TOOL_NAME + ":" + ImageBuilder.TOOL_VERSION);
      entry.put("comment", spec.name());
      history.insert(historyAt + i, entry);
    }
    byte[] configBytes = JSON.writeValueAsBytes(config);
    Digest newConfig = blobs.put(configBytes);
    ObjectNode configDescriptor = (ObjectNode) manifest.get("config");
    configDescriptor.put("digest", newConfig.toString());
    configDescriptor.put("size", configBytes.length);
    return blobs.put(JSON.writeValueAsBytes(manifest));
  }

  private ObjectNode object(Digest digest) throws IOException {
    Optional<JsonNode> node = readBlob(digest);
    if (node.isEmpty() || !(node.get() instanceof ObjectNode object)) {
      throw new IOException("blob " + digest + " is missing from " + dir + " or not JSON");
    }
    return object;
  }

  /** The image of this name, if the layout has it and all its blobs; marks it as used. */
  Optional<BuiltImage> find(String name) throws IOException {
    for (JsonNode entry : readIndex().path("manifests")) {
      if (name.equals(entry.path("annotations").path(REF_NAME).asText(null))) {
        Digest manifest = Digest.parse(entry.path("digest").asText());
        Optional<BuiltImage> image = read(name, manifest);
        if (image.isPresent()) {
          touch(manifest);
        }
        return image;
      }
    }
    return Optional.empty();
  }

  /** Reads an image back from its manifest; empty (and a warning) when a blob is missing. */
  private Optional<BuiltImage> read(String name, Digest manifestDigest) throws IOException {
    Optional<JsonNode> manifest = readBlob(manifestDigest);
    if (manifest.isEmpty()) {
      log.warn(
          "image {}: manifest {} is missing from {}; it will be rebuilt",
          name,
          manifestDigest,
          dir);
      return Optional.empty();
    }
    Digest configDigest = Digest.parse(manifest.get().path("config").path("digest").asText());
    Optional<JsonNode> config = readBlob(configDigest);
    if (config.isEmpty()) {
      log.warn(
          "image {}: config {} is missing from {}; it will be rebuilt", name, configDigest, dir);
      return Optional.empty();
    }
    JsonNode diffIds = config.get().path("rootfs").path("diff_ids");
    JsonNode layerNodes = manifest.get().path("layers");
    if (diffIds.size() != layerNodes.size()) {
      throw new IOException(
          "image "
              + name
              + " in "
              + dir
              + " is damaged: its manifest has "
              + layerNodes.size()
              + " layers but its config "
              + diffIds.size()
              + " diff_ids; delete "
              + index
              + " entry or the layout and rebuild");
    }
    List<ImageLayer> layers = new ArrayList<>();
    for (int i = 0; i < layerNodes.size(); i++) {
      JsonNode layer = layerNodes.get(i);
      Digest digest = Digest.parse(layer.path("digest").asText());
      if (!blobs.contains(digest)) {
        log.warn("image {}: layer {} is missing from {}; it will be rebuilt", name, digest, dir);
        return Optional.empty();
      }
      layers.add(
          new ImageLayer(
              digest,
              Digest.parse(diffIds.get(i).asText()),
              layer.path("mediaType").asText(),
              layer.path("size").asLong(),
              blobs.path(digest)));
    }
    JsonNode c = config.get().path("config");
    String workingDir = c.path("WorkingDir").asText("");
    return Optional.of(
        new BuiltImage(
            name,
            manifestDigest,
            configDigest,
            layers,
            strings(c.path("Entrypoint")),
            strings(c.path("Cmd")),
            strings(c.path("Env")),
            workingDir.isEmpty() ? "/" : workingDir));
  }

  private Optional<JsonNode> readBlob(Digest digest) throws IOException {
    Optional<Path> file = blobs.file(digest);
    if (file.isEmpty()) {
      return Optional.empty();
    }
    return Optional.of(JSON.readTree(file.get().toFile()));
  }

  private static List<String> strings(JsonNode array) {
    List<String> out = new ArrayList<>();
    array.forEach(n -> out.add(n.asText()));
    return out;
  }

  /** Points {@code name} at the manifest in index.json, replacing an entry of the same name. */
  private void tag(String name, Digest manifestDigest) throws IOException {
    ObjectNode wanted = descriptor(name, manifestDigest, Files.size(blobs.path(manifestDigest)));
    withIndexLock(
        () -> {
          ObjectNode current = readIndex();
          ArrayNode manifests = JSON.createArrayNode();
          int sameName = 0;
          boolean unchanged = false;
          for (JsonNode entry : current.path("manifests")) {
            if (name.equals(entry.path("annotations").path(REF_NAME).asText(null))) {
              unchanged = entry.equals(wanted);
              if (sameName++ == 0) {
                manifests.add(wanted); // keeps the entry's place in the index
              }
            } else {
              manifests.add(entry);
            }
          }
          if (sameName == 1 && unchanged) {
            return; // a rebuild of the same image: index.json is already right
          }
          if (sameName == 0) {
            manifests.add(wanted);
          }
          current.set("manifests", manifests);
          writeIndex(current);
        });
  }

  private static ObjectNode descriptor(String name, Digest digest, long size) {
    ObjectNode d = JSON.createObjectNode();
    d.put("mediaType", MANIFEST_MEDIA_TYPE);
    d.put("digest", digest.toString());
    d.put("size", size);
    d.putObject("annotations").put(REF_NAME, name);
    return d;
  }

  private static ObjectNode emptyIndex() {
    ObjectNode index = JSON.createObjectNode();
    index.put("schemaVersion", 2);
    index.put("mediaType", INDEX_MEDIA_TYPE);
    index.putArray("manifests");
    return index;
  }

  private ObjectNode readIndex() throws IOException {
    try {
      JsonNode node = JSON.readTree(index.toFile());
      if (!(node instanceof ObjectNode object)) {
        throw new IOException(index + " is not a JSON object; delete it to start an empty layout");
      }
      return object;
    } catch (NoSuchFileException e) {
      return emptyIndex();
    }
  }

  private void writeIndex(ObjectNode content) throws IOException {
    writeAtomically(index, JSON.writeValueAsBytes(content));
  }

  private void writeAtomically(Path target, byte[] content) throws IOException {
    Path temp = dir.resolve("." + target.getFileName() + "." + UUID.randomUUID() + ".tmp");
    try {
      Files.write(temp, content);
      try {
        Files.move(
            temp, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException e) {
        Files.move(temp, target, StandardCopyOption.REPLACE_EXISTING);
      }
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  private interface IndexUpdate {
    void run() throws IOException;
  }

  private void withIndexLock(IndexUpdate update) throws IOException {
    ReentrantLock lock = INDEX_LOCKS.computeIfAbsent(dir, d -> new ReentrantLock());
    lock.lock();
    try (FileChannel channel =
        FileChannel.open(lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
      FileLock fileLock = channel.lock();
      try {
        update.run();
      } finally {
        fileLock.release();
      }
    } finally {
      lock.unlock();
    }
  }
}
