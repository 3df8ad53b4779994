package dev.kiln.image;

import java.util.List;
import java.util.Objects;

/** A layer to add on top of the base image: a name (for logs) and its files. */
public record LayerSpec(String name, List<LayerFile> files) {
  public LayerSpec {
    Objects.requireNonNull(name, "name");
    files = List.copyOf(files);
  }
}
