package dev.kiln.controlplane;

import dev.kiln.worker.UdfException;

/**
 * A pipeline step failed in a way the step can classify: the kind decides how Flight calls and
 * retries see it, the code what ApplyUdfResource answers. The message is for the user.
 */
final class StepFailure extends Exception {
  private static final long serialVersionUID = 1L;
  private final UdfException.Kind kind;
  private final ErrorCode code;

  StepFailure(UdfException.Kind kind, ErrorCode code, String message, Throwable cause) {
    super(message, cause);
    this.kind = kind;
    this.code = code;
  }

  UdfException toUdfException() {
    return new UdfException(kind, getMessage(), getCause());
  }

  ErrorCode code() {
    return code;
  }
}
