package dev.kiln.image;

import dev.kiln.cache.Digest;
import java.util.List;

/**
 * An image in the local OCI layout.
 *
 * @param name its name in the layout
 * @param manifestDigest the manifest's digest: the image's identity
 * @param configDigest the config's digest
 * @param layers all layers, base first
 * @param entrypoint entrypoint from the config
 * @param cmd cmd from the config
 * @param env {@code KEY=value} pairs from the config
 * @param workingDir working directory from the config ({@code /} when unset)
 */
public record BuiltImage(
    String name,
    Digest manifestDigest,
    Digest configDigest,
    List<ImageLayer> layers,
    List<String> entrypoint,
    List<String> cmd,
    List<String> env,
    String workingDir) {
  public BuiltImage {
    layers = List.copyOf(layers);
    entrypoint = List.copyOf(entrypoint);
    cmd = List.copyOf(cmd);
    env = List.copyOf(env);
  }
}
