package dev.kiln.image;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The base images UDFs run on, by Python {@code major.minor}. With no mapping, the one default base
 * image serves every {@code runtime_version} (the embedded default); once a mapping exists, a
 * version without one is an error that lists the configured versions.
 */
public final class Runtimes implements AutoCloseable {

  /** One base image, its identity, and the builder that builds images over it. */
  public record Runtime(String name, BaseImage base, String digest, ImageBuilder images) {}

  private final Runtime fallback;
  private final Map<String, Runtime> byVersion;

  private Runtimes(Runtime fallback, Map<String, Runtime> byVersion) {
    this.fallback = fallback;
    this.byVersion = byVersion;
  }

  /**
   * Opens every base image (resolving each digest once).
   *
   * @param byVersion base image reference per Python {@code major.minor}; may be empty
   * @param fallback the base image for every version when {@code byVersion} is empty
   * @param fallbackHint what to do when the fallback cannot be used (how to build it)
   * @param imagesDir where the image builders keep their layouts and caches
   * @throws KilnException {@link ErrorCode#BASE_IMAGE_UNAVAILABLE} naming the image and what to do
   */
  public static Runtimes open(
      Map<String, String> byVersion, String fallback, String fallbackHint, Path imagesDir)
      throws KilnException, IOException {
    List<Runtime> opened = new ArrayList<>();
    try {
      Map<String, Runtime> versions = new LinkedHashMap<>();
      for (Map.Entry<String, String> e : byVersion.entrySet()) {
        Runtime r =
            open(
                "python " + e.getKey(),
                e.getValue(),
                imagesDir,
                "pass an image archive or a registry reference");
        opened.add(r);
        versions.put(e.getKey(), r);
      }
      Runtime fallbackRuntime = null;
      if (versions.isEmpty()) {
        fallbackRuntime = open("default", fallback, imagesDir, fallbackHint);
        opened.add(fallbackRuntime);
      }
      return new Runtimes(fallbackRuntime, Map.copyOf(versions));
    } catch (KilnException | IOException | RuntimeException e) {
      opened.forEach(r -> r.images().close());
      throw e;
    }
  }

  private static Runtime open(String name, String reference, Path imagesDir, String hint)
      throws KilnException, IOException {
    try {
      BaseImage base = BaseImage.parse(reference);
      String digest = base.digest();
      return new Runtime(name, base, digest, new ImageBuilder(base, imagesDir));
    } catch (IllegalArgumentException | IOException e) {
      throw new KilnException(
          ErrorCode.BASE_IMAGE_UNAVAILABLE,
          "cannot use base image '"
              + reference
              + "' ("
              + name
              + "): "
              + e.getMessage()
              + "; "
              + hint,
          e);
    }
  }

  /**
   * The runtime for a spec's {@code runtime_version} (e.g. {@code 3.12.2}).
   *
   * @throws KilnException {@link ErrorCode#INVALID_SPEC} listing the configured versions
   */
  public Runtime forVersion(String runtimeVersion) throws KilnException {
    if (fallback != null) {
      return fallback;
    }
    String[] parts = runtimeVersion.split("\\.");
    String minor = parts.length >= 2 ? parts[0] + "." + parts[1] : runtimeVersion;
    Runtime r = byVersion.get(minor);
    if (r == null) {
      throw new KilnException(
          ErrorCode.INVALID_SPEC,
          "invalid UDF spec: field 'runtime_version': Python "
              + minor
              + " has no base image on this Kiln server; configured: "
              + String.join(", ", byVersion.keySet())
              + " (set RUNTIME_VERSION to one of them, or add --runtime "
              + minor
              + "=IMAGE)");
    }
    return r;
  }

  /** Every configured runtime. */
  public List<Runtime> all() {
    return fallback != null ? List.of(fallback) : List.copyOf(byVersion.values());
  }

  @Override
  public void close() {
    all().forEach(r -> r.images().close());
  }
}
