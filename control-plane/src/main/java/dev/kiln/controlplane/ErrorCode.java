package dev.kiln.controlplane;

import io.grpc.Status;

/**
 * Every error Kiln reports to a client, numbered by kind: 1xx user errors (fix the request), 2xx
 * internal errors (a Kiln bug), 3xx resource errors (the machine is short of something), 4xx
 * external errors (a dependency failed). Mapped to a gRPC status at the edge.
 */
public enum ErrorCode {
  INVALID_SPEC(100, Status.Code.INVALID_ARGUMENT),
  HANDLER_NOT_DEFINED(101, Status.Code.INVALID_ARGUMENT),
  UNSUPPORTED_TYPE(102, Status.Code.INVALID_ARGUMENT),
  UNSUPPORTED_FEATURE(103, Status.Code.UNIMPLEMENTED),
  IMPORT_MISMATCH(104, Status.Code.INVALID_ARGUMENT),
  UDF_LOAD_FAILED(105, Status.Code.FAILED_PRECONDITION),
  IMPORT_FAILED(106, Status.Code.FAILED_PRECONDITION),
  PACKAGES_UNRESOLVABLE(107, Status.Code.FAILED_PRECONDITION),

  INTERNAL(200, Status.Code.INTERNAL),

  SANDBOX_UNAVAILABLE(300, Status.Code.UNAVAILABLE),
  SHUTTING_DOWN(301, Status.Code.UNAVAILABLE),
  SANDBOX_OUT_OF_MEMORY(302, Status.Code.RESOURCE_EXHAUSTED),

  BASE_IMAGE_UNAVAILABLE(400, Status.Code.UNAVAILABLE),
  IMAGE_BUILD_FAILED(401, Status.Code.INTERNAL),
  IMPORT_UNAVAILABLE(402, Status.Code.UNAVAILABLE),
  PACKAGE_INDEX_UNAVAILABLE(403, Status.Code.UNAVAILABLE);

  private final int number;
  private final Status.Code grpcCode;

  ErrorCode(int number, Status.Code grpcCode) {
    this.number = number;
    this.grpcCode = grpcCode;
  }

  public int number() {
    return number;
  }

  public Status.Code grpcCode() {
    return grpcCode;
  }

  /** True for errors the caller can fix by changing the request. */
  public boolean isUserError() {
    return number < 200;
  }
}
