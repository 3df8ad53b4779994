package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.EnumMap;
import java.util.Map;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStatusCode;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The Flight edge: every code's status, and the message Databend shows the SQL user ("reported an
 * error: <message>").
 */
class FlightErrorsTest {

  /** Each code's Flight status; null = gRPC FAILED_PRECONDITION, which Flight has no code for. */
  static final Map<ErrorCode, FlightStatusCode> EXPECTED = new EnumMap<>(ErrorCode.class);

  static {
    for (ErrorCode c :
        new ErrorCode[] {
          ErrorCode.INVALID_SPEC,
          ErrorCode.HANDLER_NOT_DEFINED,
          ErrorCode.UNSUPPORTED_TYPE,
          ErrorCode.IMPORT_MISMATCH,
          ErrorCode.IMPORT_FAILED,
          ErrorCode.INVALID_REQUIREMENT,
          ErrorCode.ARGUMENTS_MISMATCH,
          ErrorCode.INVALID_CALL,
          ErrorCode.INVALID_CONFIGURATION,
          ErrorCode.INVALID_WORKER_OPTION
        }) {
      EXPECTED.put(c, FlightStatusCode.INVALID_ARGUMENT);
    }
    for (ErrorCode c :
        new ErrorCode[] {
          ErrorCode.UDF_LOAD_FAILED,
          ErrorCode.PACKAGES_UNRESOLVABLE,
          ErrorCode.PACKAGE_NOT_FOUND,
          ErrorCode.NO_COMPATIBLE_WHEEL,
          ErrorCode.NO_MATCHING_VERSION,
          ErrorCode.PACKAGE_CONFLICT,
          ErrorCode.RESOLUTION_TOO_COMPLEX,
          ErrorCode.WORKER_SUSPENDED
        }) {
      EXPECTED.put(c, null);
    }
    EXPECTED.put(ErrorCode.WORKER_EXISTS, FlightStatusCode.ALREADY_EXISTS);
    EXPECTED.put(ErrorCode.WORKER_NOT_FOUND, FlightStatusCode.NOT_FOUND);
    EXPECTED.put(ErrorCode.UDF_RAISED, FlightStatusCode.UNKNOWN);
    EXPECTED.put(ErrorCode.BATCH_TIMEOUT, FlightStatusCode.TIMED_OUT);
    EXPECTED.put(ErrorCode.TOKEN_MISSING, FlightStatusCode.UNAUTHENTICATED);
    EXPECTED.put(ErrorCode.TOKEN_INVALID, FlightStatusCode.UNAUTHENTICATED);
    EXPECTED.put(ErrorCode.TENANT_MISMATCH, FlightStatusCode.UNAUTHORIZED);
    EXPECTED.put(ErrorCode.UDF_NOT_FOUND, FlightStatusCode.NOT_FOUND);
    EXPECTED.put(ErrorCode.CALL_CANCELLED, FlightStatusCode.CANCELLED);
    EXPECTED.put(ErrorCode.INTERNAL, FlightStatusCode.INTERNAL);
    for (ErrorCode c : ErrorCode.values()) {
      if (c.kind() == ErrorCode.Kind.RESOURCES || c.kind() == ErrorCode.Kind.EXTERNAL) {
        EXPECTED.put(c, FlightStatusCode.UNAVAILABLE);
      }
    }
    EXPECTED.put(ErrorCode.RUNNER_CRASHED, FlightStatusCode.INTERNAL);
    EXPECTED.put(ErrorCode.NODE_BUDGET_EXHAUSTED, FlightStatusCode.RESOURCE_EXHAUSTED);
  }

  @Test
  void everyCodeHasAnExpectedStatus() {
    assertThat(EXPECTED.keySet()).containsExactlyInAnyOrder(ErrorCode.values());
  }

  @ParameterizedTest
  @EnumSource(ErrorCode.class)
  void statusAndMessage(ErrorCode code) {
    RuntimeException e =
        FlightErrors.toFlight(
            new KilnException(code, "what went wrong; what to do", new IllegalStateException("x")));
    FlightStatusCode expected = EXPECTED.get(code);
    if (expected == null) {
      assertThat(e).isInstanceOf(StatusRuntimeException.class);
      Status s = ((StatusRuntimeException) e).getStatus();
      assertThat(s.getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION);
      assertThat(s.getDescription()).isEqualTo("what went wrong; what to do");
    } else {
      assertThat(e).isInstanceOf(FlightRuntimeException.class);
      FlightRuntimeException f = (FlightRuntimeException) e;
      assertThat(f.status().code()).isEqualTo(expected);
      assertThat(f.status().description()).isEqualTo("what went wrong; what to do");
      assertThat(f.status().cause()).as("causes are logged, not sent").isNull();
    }
  }

  @Test
  void longMessagesAreCutInTheMiddle() {
    String message = "head " + "x".repeat(10_000) + " tail";
    RuntimeException e = FlightErrors.toFlight(new KilnException(ErrorCode.UDF_RAISED, message));
    String sent = ((FlightRuntimeException) e).status().description();
    assertThat(sent.length()).isLessThanOrEqualTo(FlightErrors.MAX_STATUS_MESSAGE);
    assertThat(sent).startsWith("head ").endsWith(" tail").contains("(cut)");
  }
}
