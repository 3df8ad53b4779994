package dev.kiln.worker;

import java.util.Objects;

/**
 * A UDF call or start that failed, with a message written for the SQL user (it reaches them as
 * Databend's {@code reported an error: <message>}). The endpoint maps {@link Kind} to a Flight
 * status code.
 */
public final class UdfException extends Exception {

  /** What went wrong, which decides the status code and whether a runner is replaced. */
  public enum Kind {
    /** The UDF raised, or returned a value its result type cannot hold. */
    USER_ERROR,
    /** The UDF code could not be loaded (syntax error, import failure, missing handler). */
    LOAD_FAILED,
    /** The runner process died while computing a batch. */
    RUNNER_CRASHED,
    /** A batch took longer than the batch timeout. */
    TIMEOUT,
    /** The input does not match the UDF's declared signature, or a type is not supported. */
    BAD_INPUT,
    /** The UDF cannot run now (starting, shutting down, sandbox gone); trying again may work. */
    UNAVAILABLE,
    /** A bug or protocol violation inside Kiln. */
    INTERNAL
  }

  private final Kind kind;

  public UdfException(Kind kind, String message) {
    super(message);
    this.kind = Objects.requireNonNull(kind, "kind");
  }

  public UdfException(Kind kind, String message, Throwable cause) {
    super(message, cause);
    this.kind = Objects.requireNonNull(kind, "kind");
  }

  public Kind kind() {
    return kind;
  }
}
