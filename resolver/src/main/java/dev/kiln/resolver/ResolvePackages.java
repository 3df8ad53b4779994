package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.io.OutputStream;
import java.util.List;
import java.util.Objects;

/**
 * The provisioning pipeline's first step: a UDF's requirements, resolved for the Python its base
 * image runs, to an exact {@link Lock} (cached by the {@link PackageResolver}). Before anything
 * runs, {@link #check} tells whether a requirement string is valid at all.
 */
public final class ResolvePackages {
  private final PackageResolver resolver;

  public ResolvePackages(PackageResolver resolver) {
    this.resolver = Objects.requireNonNull(resolver, "resolver");
  }

  /**
   * Checks that {@code text} is a valid PEP 508 requirement.
   *
   * @throws KilnException {@link ErrorCode#INVALID_REQUIREMENT} saying what is wrong with it
   */
  public static void check(String text) throws KilnException {
    Requirement.parse(text);
  }

  /**
   * The lock for {@code requirements} on {@code target}; the empty lock for none.
   *
   * @throws KilnException the resolver's code (no such package, no compatible wheel, a conflict, an
   *     invalid requirement, …) with a message that starts with what failed; {@link
   *     ErrorCode#PACKAGE_INDEX_UNAVAILABLE} when the index cannot be read
   */
  public Lock resolve(List<String> requirements, TargetEnvironment target)
      throws KilnException, InterruptedException {
    if (requirements.isEmpty()) {
      return Lock.empty();
    }
    try {
      return resolver.resolve(requirements, target);
    } catch (KilnException e) {
      throw e.in("the UDF's packages cannot be installed");
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          "the package index could not be read ("
              + e.getMessage()
              + "); retry, or check"
              + " --index-url",
          e);
    }
  }

  /** Streams a locked wheel, checking its sha256 (see {@link PackageResolver#download}). */
  public void download(LockedPackage pkg, OutputStream out)
      throws KilnException, IOException, InterruptedException {
    resolver.download(pkg, out);
  }
}
