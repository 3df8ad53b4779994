package dev.kiln.image;

import com.google.cloud.tools.jib.api.DockerClient;
import com.google.cloud.tools.jib.api.ImageDetails;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.image.ImageTarball;
import dev.kiln.cache.Digest;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Consumer;

/**
 * A write-only "Docker daemon" for Jib whose {@code load} puts the built image's blobs straight
 * into Kiln's OCI layout, for one build. It is how a build reaches the layout without an image
 * tarball on disk (see {@link OciTarballSink}); the image is the OCI one Jib built, byte for byte.
 */
final class LayoutDockerClient implements DockerClient {
  private final OciLayout layout;
  private final Path scratch;
  private Digest loaded;

  LayoutDockerClient(OciLayout layout, Path scratch) {
    this.layout = layout;
    this.scratch = scratch;
  }

  /** The manifest of the image stored by {@link #load}; null until Jib has loaded it. */
  Digest loaded() {
    return loaded;
  }

  @Override
  public boolean supported(Map<String, String> parameters) {
    return true;
  }

  @Override
  public String load(ImageTarball imageTarball, Consumer<Long> writtenByteCountListener)
      throws IOException {
    loaded = layout.receive(imageTarball::writeTo, scratch);
    return "stored " + loaded + " in " + layout.dir();
  }

  @Override
  public void save(ImageReference imageReference, Path outputPath, Consumer<Long> written) {
    throw new UnsupportedOperationException("the OCI layout target only receives images");
  }

  @Override
  public ImageDetails inspect(ImageReference imageReference) {
    throw new UnsupportedOperationException("the OCI layout target only receives images");
  }
}
