package dev.kiln.base;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.HashSet;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class ErrorCodeTest {

  @Test
  void numbersAreUniqueAndTheirHundredsGiveTheKind() {
    Set<Integer> seen = new HashSet<>();
    for (ErrorCode code : ErrorCode.values()) {
      assertThat(seen.add(code.number())).as("%s's number is unique", code).isTrue();
      assertThat(code.number()).isBetween(100, 499);
    }
    assertThat(ErrorCode.INVALID_SPEC.kind()).isEqualTo(ErrorCode.Kind.USER_INPUT);
    assertThat(ErrorCode.INTERNAL.kind()).isEqualTo(ErrorCode.Kind.INTERNAL);
    assertThat(ErrorCode.SANDBOX_UNAVAILABLE.kind()).isEqualTo(ErrorCode.Kind.RESOURCES);
    assertThat(ErrorCode.PACKAGE_INDEX_UNAVAILABLE.kind()).isEqualTo(ErrorCode.Kind.EXTERNAL);
  }

  @ParameterizedTest
  @EnumSource(ErrorCode.class)
  void everyCodeHasALabelAndAKind(ErrorCode code) {
    assertThat(code.label()).isEqualTo("KILN-" + code.number());
    assertThat(code.isUserError()).isEqualTo(code.kind() == ErrorCode.Kind.USER_INPUT);
  }

  @Test
  void contextKeepsCodeAndCause() {
    IllegalStateException cause = new IllegalStateException("disk");
    KilnException e = new KilnException(ErrorCode.INVALID_SPEC, "must be a string", cause);
    KilnException wider = e.in("spec field 'handler'");
    assertThat(wider.code()).isEqualTo(ErrorCode.INVALID_SPEC);
    assertThat(wider).hasMessage("spec field 'handler': must be a string").hasCause(cause);
    assertThat(wider.withCode(ErrorCode.UNSUPPORTED_TYPE).code())
        .isEqualTo(ErrorCode.UNSUPPORTED_TYPE);
  }
}
