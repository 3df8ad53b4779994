package dev.kiln.base;

import java.util.Objects;

/**
 * The one exception Kiln's modules raise for errors that reach a user: a {@link ErrorCode} and a
 * message written for that user (what was wrong, what to do). The cause is for the server log and
 * is never sent. Each edge turns it into its wire status in one place.
 */
public final class KilnException extends Exception {
  private static final long serialVersionUID = 1L;
  private final ErrorCode code;

  public KilnException(ErrorCode code, String message) {
    super(message);
    this.code = Objects.requireNonNull(code, "code");
  }

  public KilnException(ErrorCode code, String message, Throwable cause) {
    super(message, cause);
    this.code = Objects.requireNonNull(code, "code");
  }

  public ErrorCode code() {
    return code;
  }

  /**
   * The same error seen from a wider context: {@code where + ": " + message}, same code and cause,
   * e.g. {@code e.in("spec field 'handler'")}.
   */
  public KilnException in(String where) {
    return withMessage(where + ": " + getMessage());
  }

  /** The same error (code, cause, stack trace) with another message. */
  public KilnException withMessage(String message) {
    KilnException e = new KilnException(code, message, getCause());
    e.setStackTrace(getStackTrace());
    return e;
  }

  /** The same error under another code, e.g. when a wider context knows better what it means. */
  public KilnException withCode(ErrorCode other) {
    KilnException e = new KilnException(other, getMessage(), getCause());
    e.setStackTrace(getStackTrace());
    return e;
  }
}
