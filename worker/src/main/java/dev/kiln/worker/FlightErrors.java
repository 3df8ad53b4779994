package dev.kiln.worker;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import io.grpc.Status;
import org.apache.arrow.flight.CallStatus;
import org.apache.arrow.flight.FlightStatusCode;

/**
 * The Flight edge of the error taxonomy: the one place where an {@link ErrorCode} becomes the
 * status a Flight call fails with. Databend shows the message to the SQL user as {@code reported an
 * error: <message>}, so the message goes out as it is (cut in the middle when it would not fit in
 * the client's header limit); causes stay in the server log.
 */
final class FlightErrors {

  /** gRPC trailers must fit the client's header limit; longer messages are cut in the middle. */
  static final int MAX_STATUS_MESSAGE = 4000;

  private FlightErrors() {}

  /**
   * The Flight status of a code; {@code null} for codes Flight has no status for (a UDF that does
   * not load, packages that cannot be installed), which go out as gRPC {@code FAILED_PRECONDITION}.
   */
  static FlightStatusCode flightCode(ErrorCode code) {
    return switch (code) {
      case INVALID_SPEC,
          HANDLER_NOT_DEFINED,
          UNSUPPORTED_TYPE,
          IMPORT_MISMATCH,
          IMPORT_FAILED,
          INVALID_REQUIREMENT,
          ARGUMENTS_MISMATCH,
          INVALID_CALL,
          INVALID_CONFIGURATION,
          INVALID_WORKER_OPTION ->
          FlightStatusCode.INVALID_ARGUMENT;
      case UDF_LOAD_FAILED,
          PACKAGES_UNRESOLVABLE,
          PACKAGE_NOT_FOUND,
          NO_COMPATIBLE_WHEEL,
          NO_MATCHING_VERSION,
          PACKAGE_CONFLICT,
          RESOLUTION_TOO_COMPLEX,
          WORKER_SUSPENDED ->
          null;
      case WORKER_EXISTS -> FlightStatusCode.ALREADY_EXISTS;
      case UDF_RAISED -> FlightStatusCode.UNKNOWN;
      case BATCH_TIMEOUT -> FlightStatusCode.TIMED_OUT;
      case TOKEN_MISSING, TOKEN_INVALID -> FlightStatusCode.UNAUTHENTICATED;
      case TENANT_MISMATCH -> FlightStatusCode.UNAUTHORIZED;
      case UDF_NOT_FOUND, WORKER_NOT_FOUND -> FlightStatusCode.NOT_FOUND;
      case CALL_CANCELLED -> FlightStatusCode.CANCELLED;
      case INTERNAL, RUNNER_CRASHED -> FlightStatusCode.INTERNAL;
      case NODE_BUDGET_EXHAUSTED -> FlightStatusCode.RESOURCE_EXHAUSTED;
      case SANDBOX_UNAVAILABLE,
          SHUTTING_DOWN,
          BASE_IMAGE_UNAVAILABLE,
          IMAGE_BUILD_FAILED,
          IMPORT_UNAVAILABLE,
          PACKAGE_INDEX_UNAVAILABLE,
          PACKAGE_HASH_MISMATCH,
          REGISTRY_UNAVAILABLE ->
          FlightStatusCode.UNAVAILABLE;
    };
  }

  /** The exception to fail a Flight call with. */
  static RuntimeException toFlight(KilnException e) {
    String message = truncate(e.getMessage());
    FlightStatusCode code = flightCode(e.code());
    if (code == null) {
      // Flight has no FAILED_PRECONDITION; a plain gRPC status passes through Flight unchanged.
      return Status.FAILED_PRECONDITION.withDescription(message).asRuntimeException();
    }
    return new CallStatus(code, null, message, null).toRuntimeException();
  }

  static String truncate(String message) {
    if (message == null) {
      return "";
    }
    if (message.length() <= MAX_STATUS_MESSAGE) {
      return message;
    }
    int half = MAX_STATUS_MESSAGE / 2 - 20;
    return message.substring(0, half)
        + "\n  … (cut) …\n"
        + message.substring(message.length() - half);
  }
}
