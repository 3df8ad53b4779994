package dev.kiln.resolver;

/**
 * A runtime spec (or one of its parts) is invalid. The message names the field, says what was wrong
 * and what is allowed; it is safe to show to the user as is.
 */
public final class SpecException extends Exception {
  private static final long serialVersionUID = 1L;

  public SpecException(String message) {
    super(message);
  }

  /** Prefixes the message with the field it is about, e.g. {@code input_types[1]}. */
  public SpecException inField(String field) {
    SpecException e = new SpecException("spec field '" + field + "': " + getMessage());
    e.setStackTrace(getStackTrace());
    return e;
  }
}
