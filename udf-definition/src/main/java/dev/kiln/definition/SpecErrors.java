package dev.kiln.definition;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;

/** How the definition's parsers word their errors: {@code spec field 'NAME': what is wrong}. */
final class SpecErrors {
  private SpecErrors() {}

  /** An invalid spec (or part of one); the message says what is wrong and what is allowed. */
  static KilnException invalid(String message) {
    return new KilnException(ErrorCode.INVALID_SPEC, message);
  }

  /** The context for an error in one field of the spec, for {@link KilnException#in}. */
  static String field(String name) {
    return "spec field '" + name + "'";
  }
}
