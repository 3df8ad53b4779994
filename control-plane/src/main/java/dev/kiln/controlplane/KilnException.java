package dev.kiln.controlplane;

import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * An error with a code and a message meant for the user; converted to a gRPC status at the edge.
 */
public final class KilnException extends Exception {
  private static final long serialVersionUID = 1L;
  private final ErrorCode code;

  public KilnException(ErrorCode code, String message) {
    super(message);
    this.code = code;
  }

  public KilnException(ErrorCode code, String message, Throwable cause) {
    super(message, cause);
    this.code = code;
  }

  public ErrorCode code() {
    return code;
  }

  /** The gRPC form: the message (never a stack trace) under the code's status. */
  public StatusRuntimeException toStatus() {
    return Status.fromCode(code.grpcCode())
        .withDescription(getMessage() + " [KILN-" + code.number() + "]")
        .asRuntimeException();
  }
}
