package dev.kiln.image;

import java.io.IOException;
import java.util.List;

/**
 * Where images run, as the image builder needs it for facts that only running an image can tell
 * (which Python a base image has) and to get a shared image ready ahead of need. The control plane
 * implements it with the provisioner.
 */
public interface ImageHost {

  /** Gets an image ready to start fast (e.g. extracts its layers) without starting it. */
  void prepare(BuiltImage image) throws IOException, InterruptedException;

  /**
   * Gets one layer ready ahead of the image that will hold it (e.g. extracts it while the image's
   * other layers are still being built). Nothing by default.
   */
  default void prepareLayer(ImageLayer layer) throws IOException, InterruptedException {}

  /**
   * Runs {@code argv} once in a throwaway container of {@code image} and returns what it printed on
   * stdout; fails when it exits non-zero.
   */
  String run(BuiltImage image, List<String> argv) throws IOException, InterruptedException;

  /**
   * As {@link #run}, for work nobody waits for (byte code compiled ahead of need): at the lowest
   * CPU priority where the host has one, so it does not slow down what runs meanwhile.
   */
  default String runInBackground(BuiltImage image, List<String> argv)
      throws IOException, InterruptedException {
    return run(image, argv);
  }

  /**
   * Whether {@link #runInBackground} can compile byte code here (its output is large); false:
   * images go without it, and none is asked for.
   */
  default boolean compilesByteCode() {
    return true;
  }
}
