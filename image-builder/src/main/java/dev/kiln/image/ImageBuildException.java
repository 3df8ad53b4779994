package dev.kiln.image;

/**
 * An image could not be built; the message says what failed and what to do about it, and is fit to
 * show to the user who asked for the build.
 */
public final class ImageBuildException extends Exception {
  private static final long serialVersionUID = 1L;

  public ImageBuildException(String message) {
    super(message);
  }

  public ImageBuildException(String message, Throwable cause) {
    super(message, cause);
  }
}
