package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/**
 * The gRPC edge of the error taxonomy: the one place where an {@link ErrorCode} becomes the status
 * Kiln's gRPC services answer with. The message (never a stack trace) goes out with the code's
 * label appended, e.g. {@code ... [KILN-105]}.
 */
final class GrpcErrors {
  private GrpcErrors() {}

  /** The gRPC status code of an error code. */
  static Status.Code grpcCode(ErrorCode code) {
    return switch (code) {
      case INVALID_SPEC,
          HANDLER_NOT_DEFINED,
          UNSUPPORTED_TYPE,
          IMPORT_MISMATCH,
          INVALID_REQUIREMENT,
          ARGUMENTS_MISMATCH,
          INVALID_CALL,
          INVALID_CONFIGURATION,
          INVALID_WORKER_OPTION ->
          Status.Code.INVALID_ARGUMENT;
      case UDF_LOAD_FAILED,
          IMPORT_FAILED,
          PACKAGES_UNRESOLVABLE,
          PACKAGE_NOT_FOUND,
          NO_COMPATIBLE_WHEEL,
          NO_MATCHING_VERSION,
          PACKAGE_CONFLICT,
          RESOLUTION_TOO_COMPLEX,
          WORKER_SUSPENDED ->
          Status.Code.FAILED_PRECONDITION;
      case WORKER_EXISTS -> Status.Code.ALREADY_EXISTS;
      case UDF_RAISED -> Status.Code.UNKNOWN;
      case TOKEN_MISSING, TOKEN_INVALID -> Status.Code.UNAUTHENTICATED;
      case TENANT_MISMATCH -> Status.Code.PERMISSION_DENIED;
      case UDF_NOT_FOUND, WORKER_NOT_FOUND -> Status.Code.NOT_FOUND;
      case CALL_CANCELLED -> Status.Code.CANCELLED;
      case INTERNAL -> Status.Code.INTERNAL;
      case NODE_BUDGET_EXHAUSTED -> Status.Code.RESOURCE_EXHAUSTED;
      case BATCH_TIMEOUT,
          SANDBOX_UNAVAILABLE,
          SHUTTING_DOWN,
          RUNNER_CRASHED,
          BASE_IMAGE_UNAVAILABLE,
          IMAGE_BUILD_FAILED,
          IMPORT_UNAVAILABLE,
          PACKAGE_INDEX_UNAVAILABLE,
          PACKAGE_HASH_MISMATCH,
          REGISTRY_UNAVAILABLE ->
          Status.Code.UNAVAILABLE;
    };
  }

  /** The status to fail a gRPC call with: the message and the code's label. */
  static StatusRuntimeException toStatus(KilnException e) {
    return Status.fromCode(grpcCode(e.code()))
        .withDescription(e.getMessage() + " [" + e.code().label() + "]")
        .asRuntimeException();
  }
}
