package dev.kiln.image;

import java.io.IOException;

/**
 * A wheel file is not a well-formed wheel (PEP 427): a missing or unsupported {@code WHEEL} file, a
 * {@code RECORD} that does not match the files (a damaged or tampered wheel), or a path that would
 * escape its install directory. The message names the wheel and the problem and is fit to show to
 * the user; retrying will not help, the wheel must be replaced.
 */
final class InvalidWheelException extends IOException {
  private static final long serialVersionUID = 1L;

  InvalidWheelException(String message) {
    super(message);
  }

  InvalidWheelException(String message, Throwable cause) {
    super(message, cause);
  }
}
