package dev.kiln.image;

import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * What to build: layers over the builder's base image, and the container configuration.
 *
 * @param name the image's name in the layout (e.g. {@code kiln/udf:<content key>})
 * @param layers layers in order, bottom first, all above the base image's layers
 * @param entrypoint the entrypoint; replaces the base image's
 * @param cmd the cmd (may be empty)
 * @param env environment added to (and overriding) the base image's
 * @param workingDir working directory ({@code /} when empty)
 * @param labels image labels
 */
public record ImageRequest(
    String name,
    List<LayerSpec> layers,
    List<String> entrypoint,
    List<String> cmd,
    Map<String, String> env,
    String workingDir,
    Map<String, String> labels) {
  public ImageRequest {
    Objects.requireNonNull(name, "name");
    layers = List.copyOf(layers);
    entrypoint = List.copyOf(entrypoint);
    cmd = List.copyOf(cmd);
    env = Map.copyOf(env);
    labels = Map.copyOf(labels);
    workingDir = workingDir == null || workingDir.isEmpty() ? "/" : workingDir;
  }
}
