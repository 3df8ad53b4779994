package dev.kiln.cache;

/**
 * An import could not be fetched. The message names the import's location and, for HTTP errors, the
 * status, and says what to do, e.g. {@code import @s/a.py: the presigned URL answered 403 Forbidden
 * (expired or revoked?); ...}. It never contains the URL, which is a credential.
 */
public final class ImportException extends Exception {
  private static final long serialVersionUID = 1L;

  private final String location;
  private final int httpStatus;
  private final boolean permanent;

  ImportException(
      String location, int httpStatus, boolean permanent, String message, Throwable cause) {
    super(message, cause);
    this.location = location;
    this.httpStatus = httpStatus;
    this.permanent = permanent;
  }

  /** The import's stage location, e.g. {@code @udf_stage/imports/helper.py}. */
  public String location() {
    return location;
  }

  /** The HTTP status the URL answered with, or 0 when the failure was not an HTTP answer. */
  public int httpStatus() {
    return httpStatus;
  }

  /**
   * True when asking again with the same URL cannot succeed (a 4xx answer, a malformed URL); false
   * for failures that may pass (5xx answers, network errors, a full disk).
   */
  public boolean isPermanent() {
    return permanent;
  }
}
