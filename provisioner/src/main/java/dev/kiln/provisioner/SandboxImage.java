package dev.kiln.provisioner;

import java.nio.file.Path;
import java.util.List;
import java.util.Objects;

/**
 * What a sandbox runs: an image's layers (bottom first) and its process configuration. The
 * provisioner knows nothing of how the image was built, only these files and settings.
 *
 * @param layers layer blobs, bottom (base) first; none for an image a runtime pulls by {@code
 *     reference} and never reads here
 * @param argv the init process: the image's entrypoint followed by its cmd
 * @param env {@code KEY=value} pairs from the image config
 * @param workingDir the init process's working directory ({@code /} when empty)
 * @param reference the same image in a registry, by digest ({@code registry/repository@sha256:…}),
 *     for runtimes that pull images (Kubernetes nodes); null when it is only here
 */
public record SandboxImage(
    List<Layer> layers, List<String> argv, List<String> env, String workingDir, String reference) {

  /**
   * One layer blob.
   *
   * @param digest {@code sha256:<hex>} of the blob as stored (compressed or not)
   * @param mediaType OCI or Docker layer media type; tells gzip from plain tar
   * @param blob a local file holding the blob; never modified by the provisioner
   */
  public record Layer(String digest, String mediaType, Path blob) {
    public Layer {
      Objects.requireNonNull(digest, "digest");
      Objects.requireNonNull(mediaType, "mediaType");
      Objects.requireNonNull(blob, "blob");
    }
  }

  /** An image that is only here (no registry reference). */
  public SandboxImage(List<Layer> layers, List<String> argv, List<String> env, String workingDir) {
    this(layers, argv, env, workingDir, null);
  }

  /** An image only in a registry, pulled by {@code reference}, run as {@code argv}. */
  public static SandboxImage pulled(String reference, List<String> argv) {
    return new SandboxImage(List.of(), argv, List.of(), "/", Objects.requireNonNull(reference));
  }

  public SandboxImage {
    layers = List.copyOf(layers);
    argv = List.copyOf(argv);
    env = List.copyOf(env);
    workingDir = workingDir == null || workingDir.isEmpty() ? "/" : workingDir;
    if (layers.isEmpty() && reference == null) {
      throw new IllegalArgumentException("an image needs at least one layer, or a reference");
    }
    if (argv.isEmpty()) {
      throw new IllegalArgumentException("an image needs an entrypoint or cmd to run");
    }
  }
}
