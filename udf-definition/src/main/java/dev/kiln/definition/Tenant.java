package dev.kiln.definition;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.Objects;

/**
 * A Databend tenant: whose UDFs, sandboxes and tokens these are. Both edges read it with the same
 * rule ({@link #fromHeader}): a call without an {@code x-databend-tenant} header belongs to {@link
 * #DEFAULT}, so a caller that never names a tenant can use the token it was given.
 *
 * @param name the tenant's name as Databend sends it
 */
public record Tenant(String name) {
  /** The header Databend names the tenant in, on the gRPC and the Flight calls. */
  public static final String HEADER = "x-databend-tenant";

  /** The tenant of calls that name none. */
  public static final Tenant DEFAULT = new Tenant("default");

  private static final int MAX_LENGTH = 256;

  public Tenant {
    Objects.requireNonNull(name, "name");
    if (name.isBlank()) {
      throw new IllegalArgumentException("a tenant name must not be blank");
    }
    if (name.length() > MAX_LENGTH) {
      throw new IllegalArgumentException(
          "a tenant name has at most " + MAX_LENGTH + " characters, got " + name.length());
    }
    for (int i = 0; i < name.length(); i++) {
      if (Character.isISOControl(name.charAt(i))) {
        throw new IllegalArgumentException("a tenant name must not contain control characters");
      }
    }
  }

  /**
   * The tenant a call's {@value #HEADER} header names; {@link #DEFAULT} when it names none.
   *
   * @throws KilnException {@link ErrorCode#INVALID_CALL} for a name no tenant can have
   */
  public static Tenant fromHeader(String header) throws KilnException {
    if (header == null || header.isBlank()) {
      return DEFAULT;
    }
    try {
      return new Tenant(header);
    } catch (IllegalArgumentException e) {
      throw new KilnException(
          ErrorCode.INVALID_CALL, "the " + HEADER + " header is invalid: " + e.getMessage());
    }
  }

  /** True for {@link #DEFAULT}, the tenant of calls that name none. */
  public boolean isDefault() {
    return equals(DEFAULT);
  }

  @Override
  public String toString() {
    return name;
  }
}
