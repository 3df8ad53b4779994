package dev.kiln.controlplane;

import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageHost;
import dev.kiln.image.ImageLayer;
import dev.kiln.provisioner.kubernetes.ImagePods;
import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * Where the image builder runs a base's Python with {@code --kubernetes}: in a pod of the image,
 * pushed to the registry the nodes pull from (its version and paths come back as the pod's
 * termination message), so Kiln's own pod needs no gVisor of its own. Nothing is extracted here
 * (the nodes pull the images). Byte code, whose output is far larger than a termination message, is
 * compiled in a local gVisor sandbox ({@code byteCode}) when this machine can run one, and not at
 * all otherwise: UDFs then import their packages from source.
 */
final class PodImageHost implements ImageHost {
  /** How long a probe pod may take: scheduling and pulling the base image included. */
  static final Duration POD_RUN = Duration.ofMinutes(5);

  /** Pushes an image and returns its reference by digest. */
  @FunctionalInterface
  interface Push {
    String push(BuiltImage image) throws IOException, InterruptedException;
  }

  private final ImagePods pods;
  private final Push push;
  private final ImageHost byteCode;

  /**
   * @param byteCode the local sandboxes byte code is compiled in, or null when this machine cannot
   *     run gVisor
   */
  PodImageHost(ImagePods pods, Push push, ImageHost byteCode) {
    this.pods = pods;
    this.push = push;
    this.byteCode = byteCode;
  }

  @Override
  public void prepare(BuiltImage image) {
    // The nodes pull it.
  }

  @Override
  public void prepareLayer(ImageLayer layer) {
    // The nodes pull it.
  }

  @Override
  public String run(BuiltImage image, List<String> argv) throws IOException, InterruptedException {
    return pods.run(push.push(image), argv, POD_RUN);
  }

  @Override
  public String runInBackground(BuiltImage image, List<String> argv)
      throws IOException, InterruptedException {
    if (byteCode == null) {
      throw new IOException(
          "byte code is compiled in a local gVisor sandbox, and this Kiln cannot run one (no"
              + " runsc, or not root); its UDFs import their packages from source. Give Kiln's"
              + " image runsc and its pod the rights runsc needs to compile it");
    }
    return byteCode.runInBackground(image, argv);
  }

  @Override
  public boolean compilesByteCode() {
    return byteCode != null;
  }

  /**
   * Whether this process can run gVisor sandboxes itself: {@code runsc} (a path, or a name on
   * {@code PATH}) is there and the process runs as root.
   */
  static boolean canRunGvisor(String runsc) {
    boolean found;
    if (runsc.contains("/")) {
      found = Files.isExecutable(Path.of(runsc));
    } else {
      String path = System.getenv().getOrDefault("PATH", "");
      found = false;
      for (String dir : path.split(File.pathSeparator)) {
        if (!dir.isEmpty() && Files.isExecutable(Path.of(dir, runsc))) {
          found = true;
          break;
        }
      }
    }
    if (!found) {
      return false;
    }
    try {
      // /proc/self belongs to the process's effective user.
      return Integer.valueOf(0).equals(Files.getAttribute(Path.of("/proc/self"), "unix:uid"));
    } catch (IOException | UnsupportedOperationException e) {
      return false;
    }
  }
}
