package dev.kiln.resolver;

/**
 * Resolution failed; the message is for the user (no such package / no compatible wheel + tags
 * tried + "only an sdist" / conflicting requirements named). {@link #reason()} says which kind, so
 * the caller can map it to a status.
 */
public final class ResolutionException extends Exception {
  private static final long serialVersionUID = 1L;

  /** What went wrong, for mapping to a status code. */
  public enum Reason {
    /** No index has a project of that name. */
    NO_SUCH_PACKAGE,
    /** The project exists but no version has a wheel for the target (or only sdists exist). */
    NO_COMPATIBLE_WHEEL,
    /** No version of a project matches its (single) version constraint. */
    NO_MATCHING_VERSION,
    /** No versions satisfy the requirements together. */
    CONFLICT,
    /** The resolver tried too many combinations and gave up. */
    TOO_COMPLEX,
    /** A downloaded file did not have the sha256 the index or lock promised. */
    HASH_MISMATCH,
    /** The index answered with an error or something that is not a simple-API page. */
    INDEX_ERROR
  }

  private final Reason reason;

  public ResolutionException(Reason reason, String message) {
    super(message);
    this.reason = reason;
  }

  public Reason reason() {
    return reason;
  }
}
