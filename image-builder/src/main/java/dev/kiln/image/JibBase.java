package dev.kiln.image;

import com.google.cloud.tools.jib.api.CacheDirectoryCreationException;
import com.google.cloud.tools.jib.api.DockerDaemonImage;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.api.InsecureRegistryException;
import com.google.cloud.tools.jib.api.Jib;
import com.google.cloud.tools.jib.api.JibContainerBuilder;
import com.google.cloud.tools.jib.api.RegistryException;
import com.google.cloud.tools.jib.api.RegistryImage;
import com.google.cloud.tools.jib.api.RegistryUnauthorizedException;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.net.ConnectException;
import java.net.SocketTimeoutException;
import java.net.UnknownHostException;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;

/**
 * The base image as Jib builds over it, and what went wrong in words: a missing or unreadable
 * archive, or a registry that is unknown, unreachable, not verified or refuses access, becomes a
 * {@link KilnException} ({@code BASE_IMAGE_UNAVAILABLE}) that says what to do, and any other
 * failure of a Jib build one ({@code IMAGE_BUILD_FAILED}) that names the image and the work
 * directory.
 */
final class JibBase {
  private final BaseImage base;
  private final Path workDir;

  /** workDir: the image builder's, named in messages about Jib's caches and disk space. */
  JibBase(BaseImage base, Path workDir) {
    this.base = base;
    this.workDir = workDir;
  }

  /**
   * Jib's builder over the base: an archive through {@link ArchiveDockerClient}, a registry image
   * pinned to its digest.
   *
   * @throws KilnException {@code BASE_IMAGE_UNAVAILABLE} when the archive is missing or unusable,
   *     or the registry cannot say what the tag points to
   */
  JibContainerBuilder from() throws KilnException {
    if (base.isArchive()) {
      DockerArchive archive;
      try {
        archive = base.archiveIndex();
      } catch (NoSuchFileException e) {
        throw new KilnException(
            ErrorCode.BASE_IMAGE_UNAVAILABLE,
            "base image archive "
                + base.archivePath()
                + " does not exist; run"
                + " bin/build-base-image to create it, or configure another base image",
            e);
      } catch (IOException e) {
        throw new KilnException(
            ErrorCode.BASE_IMAGE_UNAVAILABLE,
            "base image archive "
                + base.archivePath()
                + " cannot be used: "
                + e.getMessage()
                + "; rebuild it with bin/build-base-image or configure another base image",
            e);
      }
      ArchiveDockerClient daemon = new ArchiveDockerClient(archive);
      return Jib.from(daemon, DockerDaemonImage.named(daemon.imageReference()));
    }
    ImageReference pinned;
    try {
      pinned = base.pinned();
    } catch (IOException e) {
      throw baseImageFailure(e);
    }
    return Jib.from(RegistryImage.named(pinned));
  }

  /** The error for a Jib build of image {@code name} that failed with {@code e}. */
  KilnException failure(String name, Throwable e) {
    if (!base.isArchive() && isRegistryProblem(e)) {
      return baseImageFailure(e);
    }
    if (e instanceof CacheDirectoryCreationException) {
      return new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "Jib cannot create its cache under "
              + workDir.resolve("jib")
              + ": "
              + e.getMessage()
              + "; check that the work directory is writable",
          e);
    }
    if (base.isArchive() && e instanceof IOException && mentions(e, base.archivePath())) {
      return new KilnException(
          ErrorCode.BASE_IMAGE_UNAVAILABLE,
          "base image archive "
              + base.archivePath()
              + " cannot be read ("
              + e.getMessage()
              + "); rebuild it with bin/build-base-image",
          e);
    }
    return new KilnException(
        ErrorCode.IMAGE_BUILD_FAILED,
        "building image "
            + name
            + " over "
            + base
            + " failed: "
            + e
            + "; check the layer source files and free disk space under "
            + workDir,
        e);
  }

  private KilnException baseImageFailure(Throwable e) {
    ImageReference image = base.registryImage();
    String registry = image.getRegistry();
    Throwable root = e;
    while (root.getCause() != null && root.getCause() != root) {
      if (root instanceof RegistryException) {
        break;
      }
      root = root.getCause();
    }
    String what;
    if (has(e, UnknownHostException.class)) {
      what = "the registry host " + registry + " is unknown; check the base image reference";
    } else if (has(e, ConnectException.class) || has(e, SocketTimeoutException.class)) {
      what =
          "the registry "
              + registry
              + " cannot be reached ("
              + root.getMessage()
              + "); check that it is running and reachable from this machine";
    } else if (has(e, InsecureRegistryException.class)) {
      what =
          "the registry "
              + registry
              + " does not serve verified https; if it is a trusted"
              + " plain-http registry, allow insecure registries";
    } else if (has(e, RegistryUnauthorizedException.class)) {
      what =
          "the registry "
              + registry
              + " refused access to "
              + image.getRepository()
              + "; Kiln pulls base images anonymously, so use a public image or mirror it";
    } else {
      what =
          root.getMessage()
              + "; check the base image reference and that "
              + registry
              + " serves it";
    }
    return new KilnException(
        ErrorCode.BASE_IMAGE_UNAVAILABLE, "cannot get base image " + image + ": " + what, e);
  }

  private static boolean isRegistryProblem(Throwable e) {
    return has(e, RegistryException.class)
        || has(e, UnknownHostException.class)
        || has(e, ConnectException.class)
        || has(e, SocketTimeoutException.class)
        || has(e, javax.net.ssl.SSLException.class);
  }

  private static boolean has(Throwable e, Class<? extends Throwable> type) {
    Set<Throwable> seen = new HashSet<>();
    for (Throwable t = e; t != null && seen.add(t); t = t.getCause()) {
      if (type.isInstance(t)) {
        return true;
      }
    }
    return false;
  }

  private static boolean mentions(Throwable e, Path path) {
    return (e instanceof NoSuchFileException nsf && path.toString().equals(nsf.getFile()))
        || String.valueOf(e.getMessage()).contains(path.toString());
  }
}
