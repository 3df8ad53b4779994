package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.EnumMap;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** The gRPC edge: every code's status, and the message the caller reads. */
class GrpcErrorsTest {

  /** What each code answers on Kiln's gRPC services: the contract with Databend and the CLI. */
  static final Map<ErrorCode, Status.Code> EXPECTED = new EnumMap<>(ErrorCode.class);

  static {
    for (ErrorCode c :
        new ErrorCode[] {
          ErrorCode.INVALID_SPEC,
          ErrorCode.HANDLER_NOT_DEFINED,
          ErrorCode.UNSUPPORTED_TYPE,
          ErrorCode.IMPORT_MISMATCH,
          ErrorCode.INVALID_REQUIREMENT,
          ErrorCode.ARGUMENTS_MISMATCH,
          ErrorCode.INVALID_CALL,
          ErrorCode.INVALID_CONFIGURATION,
          ErrorCode.INVALID_WORKER_OPTION
        }) {
      EXPECTED.put(c, Status.Code.INVALID_ARGUMENT);
    }
    for (ErrorCode c :
        new ErrorCode[] {
          ErrorCode.UDF_LOAD_FAILED,
          ErrorCode.IMPORT_FAILED,
          ErrorCode.PACKAGES_UNRESOLVABLE,
          ErrorCode.PACKAGE_NOT_FOUND,
          ErrorCode.NO_COMPATIBLE_WHEEL,
          ErrorCode.NO_MATCHING_VERSION,
          ErrorCode.PACKAGE_CONFLICT,
          ErrorCode.RESOLUTION_TOO_COMPLEX,
          ErrorCode.WORKER_SUSPENDED
        }) {
      EXPECTED.put(c, Status.Code.FAILED_PRECONDITION);
    }
    EXPECTED.put(ErrorCode.WORKER_EXISTS, Status.Code.ALREADY_EXISTS);
    EXPECTED.put(ErrorCode.WORKER_NOT_FOUND, Status.Code.NOT_FOUND);
    EXPECTED.put(ErrorCode.UDF_RAISED, Status.Code.UNKNOWN);
    EXPECTED.put(ErrorCode.TOKEN_MISSING, Status.Code.UNAUTHENTICATED);
    EXPECTED.put(ErrorCode.TOKEN_INVALID, Status.Code.UNAUTHENTICATED);
    EXPECTED.put(ErrorCode.TENANT_MISMATCH, Status.Code.PERMISSION_DENIED);
    EXPECTED.put(ErrorCode.UDF_NOT_FOUND, Status.Code.NOT_FOUND);
    EXPECTED.put(ErrorCode.CALL_CANCELLED, Status.Code.CANCELLED);
    EXPECTED.put(ErrorCode.INTERNAL, Status.Code.INTERNAL);
    // Resources and external systems: the caller may retry.
    for (ErrorCode c : ErrorCode.values()) {
      if (c.kind() == ErrorCode.Kind.RESOURCES || c.kind() == ErrorCode.Kind.EXTERNAL) {
        EXPECTED.put(c, Status.Code.UNAVAILABLE);
      }
    }
    EXPECTED.put(ErrorCode.BATCH_TIMEOUT, Status.Code.UNAVAILABLE);
    EXPECTED.put(ErrorCode.NODE_BUDGET_EXHAUSTED, Status.Code.RESOURCE_EXHAUSTED);
  }

  @Test
  void everyCodeHasAnExpectedStatus() {
    assertThat(EXPECTED.keySet()).containsExactlyInAnyOrder(ErrorCode.values());
  }

  @ParameterizedTest
  @EnumSource(ErrorCode.class)
  void statusAndMessage(ErrorCode code) {
    StatusRuntimeException e =
        GrpcErrors.toStatus(
            new KilnException(code, "what went wrong; what to do", new IllegalStateException("x")));
    assertThat(e.getStatus().getCode()).isEqualTo(EXPECTED.get(code));
    assertThat(e.getStatus().getDescription())
        .isEqualTo("what went wrong; what to do [KILN-" + code.number() + "]");
    assertThat(e.getStatus().getCause()).as("causes are logged, not sent").isNull();
  }
}
