package dev.kiln.image;

import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.api.InvalidImageReferenceException;
import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Files;
import java.nio.file.InvalidPathException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Map;
import java.util.Objects;

/**
 * Where the base image comes from: a {@code docker save} archive on local disk (what {@code
 * bin/build-base-image} writes) or an image in a registry.
 *
 * <p>{@link #digest()} is the base image's stable identity and part of every content key, so it is
 * resolved once per instance: a registry tag is looked up the first time and then pinned, and every
 * build through an {@link ImageBuilder} uses that exact manifest even if the tag moves.
 */
public final class BaseImage {
  private static final String ARCHIVE_PREFIX = "docker-archive:";
  private static final String REGISTRY_PREFIX = "registry:";

  private final Path archive;
  private final ImageReference image;
  private volatile boolean insecureAllowed;
  private String digest;
  private Map<String, String> labels;
  private DockerArchive archiveIndex;

  private BaseImage(Path archive, ImageReference image) {
    this.archive = archive;
    this.image = image;
  }

  /**
   * Parses a base image reference: {@code docker-archive:/path/base.tar}, a path to a {@code .tar}
   * file (absolute, starting with {@code ./} or {@code ../}, or ending in {@code .tar}), or a
   * registry reference such as {@code python:3.12-slim} or {@code localhost:5000/kiln/base:1},
   * optionally written {@code registry:<reference>} and optionally pinned with {@code
   * @sha256:<digest>}.
   *
   * @throws IllegalArgumentException when the text is neither
   */
  public static BaseImage parse(String reference) {
    Objects.requireNonNull(reference, "reference");
    String text = reference.strip();
    if (text.isEmpty()) {
      throw new IllegalArgumentException(
          "base image reference is empty; give a docker-save archive (docker-archive:/path.tar) or"
              + " a registry image (e.g. python:3.12-slim)");
    }
    if (text.startsWith(ARCHIVE_PREFIX)) {
      return archive(reference, text.substring(ARCHIVE_PREFIX.length()));
    }
    if (text.startsWith(REGISTRY_PREFIX)) {
      return registry(reference, text.substring(REGISTRY_PREFIX.length()));
    }
    if (looksLikePath(text)) {
      return archive(reference, text);
    }
    return registry(reference, text);
  }

  private static boolean looksLikePath(String text) {
    return text.startsWith("/")
        || text.startsWith("./")
        || text.startsWith("../")
        || text.endsWith(".tar")
        || Files.isRegularFile(Path.of(text));
  }

  private static BaseImage archive(String original, String path) {
    if (path.isEmpty()) {
      throw new IllegalArgumentException(
          "base image reference '"
              + original
              + "' names no archive; write docker-archive:/path/base.tar");
    }
    try {
      return new BaseImage(Path.of(path).toAbsolutePath().normalize(), null);
    } catch (InvalidPathException e) {
      throw new IllegalArgumentException(
          "base image reference '" + original + "' is not a valid file path: " + e.getReason(), e);
    }
  }

  private static BaseImage registry(String original, String text) {
    try {
      ImageReference image = ImageReference.parse(text);
      if (image.isScratch()) {
        throw new IllegalArgumentException(
            "base image 'scratch' has no Python; use a Python base image (bin/build-base-image)");
      }
      return new BaseImage(null, image);
    } catch (InvalidImageReferenceException e) {
      throw new IllegalArgumentException(
          "base image reference '"
              + original
              + "' is neither a docker-save archive"
              + " (docker-archive:/path.tar) nor a registry image reference"
              + " (like python:3.12-slim or localhost:5000/kiln/base:1)",
          e);
    }
  }

  /**
   * The reference in canonical form: {@code docker-archive:<absolute path>} or the registry
   * reference ({@code registry/repository:tag} or {@code ...@sha256:...}).
   */
  public String reference() {
    return archive != null ? ARCHIVE_PREFIX + archive : image.toString();
  }

  public boolean isArchive() {
    return archive != null;
  }

  /**
   * The base image's identity, {@code sha256:<hex>}: for an archive the digest of its config (what
   * Docker calls the image id); for a registry image the digest of its manifest, looked up once (a
   * reference pinned with {@code @sha256:} needs no network). A registry on loopback may be plain
   * http, as Docker allows; others only after {@link ImageBuilder#setAllowInsecureRegistries}.
   *
   * @throws IOException when the archive is missing or damaged, or the registry cannot be asked
   */
  public synchronized String digest() throws IOException {
    if (digest == null) {
      if (archive != null) {
        digest = archiveIndex().configDigest().toString();
      } else if (image.getDigest().isPresent()) {
        digest = image.getDigest().get();
      } else {
        try (RegistryManifests registry = new RegistryManifests(image, insecure())) {
          digest = registry.manifestDigest().toString();
        }
      }
    }
    return digest;
  }

  /** The base image config's labels (bin/build-base-image sets {@code dev.kiln.python.version}). */
  public synchronized Map<String, String> labels() throws IOException {
    if (labels == null) {
      if (archive != null) {
        labels = archiveIndex().labels();
      } else {
        try (RegistryManifests registry = new RegistryManifests(pinned(), insecure())) {
          labels = Map.copyOf(registry.labels());
        }
      }
    }
    return labels;
  }

  /**
   * The registry reference pinned to {@link #digest}, so that a moving tag cannot change a build.
   */
  ImageReference pinned() throws IOException {
    return ImageReference.of(image.getRegistry(), image.getRepository(), null, digest());
  }

  /** Set by {@link ImageBuilder#setAllowInsecureRegistries}. */
  void allowInsecureRegistry(boolean allow) {
    insecureAllowed = allow;
  }

  /**
   * Whether plain http (or unverified https) may be used: when allowed, and always for a registry
   * on this machine, as Docker does.
   */
  boolean insecure() {
    return insecureAllowed || (image != null && isLoopback(image.getRegistry()));
  }

  Path archivePath() {
    return archive;
  }

  ImageReference registryImage() {
    return image;
  }

  /** The archive's index, read once; fails if the file is gone or was replaced since. */
  synchronized DockerArchive archiveIndex() throws IOException {
    if (!Files.isRegularFile(archive)) {
      throw new NoSuchFileException(
          archive.toString(),
          null,
          "the base image archive does not exist; run bin/build-base-image to create it, or"
              + " configure another base image");
    }
    if (archiveIndex == null) {
      archiveIndex = DockerArchive.read(archive);
    } else if (!DockerArchive.stamp(archive).equals(archiveIndex.stamp())) {
      // Its digest is already part of content keys handed out; building from other bytes under
      // that identity would make those keys lie.
      throw new IOException(
          "base image archive "
              + archive
              + " was replaced after Kiln read it as "
              + archiveIndex.configDigest()
              + "; restart Kiln to use the new base image");
    }
    return archiveIndex;
  }

  private static boolean isLoopback(String registry) {
    String host = registry;
    if (host.startsWith("[")) {
      host = host.substring(1, host.indexOf(']') > 0 ? host.indexOf(']') : host.length());
    } else if (host.indexOf(':') >= 0) {
      host = host.substring(0, host.indexOf(':'));
    }
    if (host.equals("localhost")) {
      return true;
    }
    if (!host.matches("[0-9.]+|[0-9a-fA-F:]+")) {
      return false; // a name other than localhost: do not resolve it just to decide this
    }
    try {
      return InetAddress.getByName(host).isLoopbackAddress();
    } catch (UnknownHostException e) {
      return false;
    }
  }

  @Override
  public String toString() {
    return reference();
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof BaseImage other && reference().equals(other.reference());
  }

  @Override
  public int hashCode() {
    return reference().hashCode();
  }
}
