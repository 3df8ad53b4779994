package dev.kiln.image;

import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * The runner an image carries, as whoever runs images supplies it (the worker's runner files): the
 * files of its layer, the init command the image starts with, its environment, and its version,
 * which is part of every image key.
 *
 * @param files absolute path in the image to contents
 * @param initCommand the image's entrypoint
 * @param env environment variables the image sets
 * @param version a digest of the runner's files
 */
public record RunnerLayer(
    Map<String, byte[]> files, List<String> initCommand, Map<String, String> env, String version) {
  public RunnerLayer {
    files = Map.copyOf(files);
    initCommand = List.copyOf(initCommand);
    env = Map.copyOf(new TreeMap<>(env));
    Objects.requireNonNull(version, "version");
  }

  /** The runner's layer. */
  public LayerSpec layer() {
    return LayerSpec.ofFiles("kiln-runner", files);
  }
}
