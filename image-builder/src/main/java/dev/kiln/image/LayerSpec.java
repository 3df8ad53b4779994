package dev.kiln.image;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;

/**
 * A layer to add on top of the base image: a name (for logs and the image history) and either its
 * files, or a layer already built ({@link #ofBlob}, such as a wheel's from {@link WheelLayers}).
 *
 * @param name the layer's name
 * @param files the files of a layer Jib builds; empty for a built layer
 * @param blob the built layer, or null when the layer is made of {@code files}
 */
public record LayerSpec(String name, List<LayerFile> files, LayerBlob blob) {
  public LayerSpec {
    Objects.requireNonNull(name, "name");
    files = List.copyOf(files);
    if (blob != null && !files.isEmpty()) {
      throw new IllegalArgumentException(
          "layer " + name + " has both files and a built blob; give one or the other");
    }
  }

  /** A layer of files, built by Jib. */
  public LayerSpec(String name, List<LayerFile> files) {
    this(name, files, null);
  }

  /** A layer of small files held in memory (path in the image to bytes), mode 0644, sorted. */
  public static LayerSpec ofFiles(String name, Map<String, byte[]> files) {
    List<LayerFile> entries = new ArrayList<>();
    new TreeMap<>(files)
        .forEach((path, bytes) -> entries.add(LayerFile.ofBytes(path, bytes, 0644)));
    return new LayerSpec(name, entries);
  }

  /** A layer already built. */
  public static LayerSpec ofBlob(String name, LayerBlob blob) {
    return new LayerSpec(name, List.of(), Objects.requireNonNull(blob, "blob"));
  }
}
