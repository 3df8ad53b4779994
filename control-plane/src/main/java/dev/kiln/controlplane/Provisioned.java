package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.image.BuildImage;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.worker.RunnerPool;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;

/**
 * What the provisioning pipeline made for a UDF resource: its image (still being built when the UDF
 * was placed in a warm sandbox; none here when another Kiln replica built it, see {@code adopted}),
 * the sandbox it runs in, the runners that serve it, where the time went, and the packages it was
 * locked to ({@code name==version}, in the lock's order; empty when adopted).
 *
 * @param adopted the registry reference of the image another replica built, which the UDF's pods
 *     run; null when this server built it
 */
record Provisioned(
    CompletableFuture<BuildImage.UdfImage> image,
    Sandbox sandbox,
    RunnerPool pool,
    ProvisioningTimings timings,
    boolean warm,
    List<String> lock,
    String adopted) {

  /** Provisioned from an image this server built. */
  Provisioned(
      CompletableFuture<BuildImage.UdfImage> image,
      Sandbox sandbox,
      RunnerPool pool,
      ProvisioningTimings timings,
      boolean warm,
      List<String> lock) {
    this(image, sandbox, pool, timings, warm, lock, null);
  }

  /** Provisioned from the image another replica built, {@code reference}. */
  static Provisioned adopted(
      String reference, Sandbox sandbox, RunnerPool pool, ProvisioningTimings timings) {
    return new Provisioned(null, sandbox, pool, timings, false, List.of(), reference);
  }

  /** The image when it is built; empty while it is being built or when its build failed. */
  Optional<BuildImage.UdfImage> builtImage() {
    return image != null && image.isDone() && !image.isCompletedExceptionally()
        ? Optional.of(image.join())
        : Optional.empty();
  }

  /** Whether the image is there (built here or by another replica), or its build ended. */
  boolean imageDone() {
    return adopted != null || image.isDone();
  }

  /** Waits for the image (another sandbox of the UDF needs it). */
  BuildImage.UdfImage awaitImage() throws KilnException, InterruptedException {
    try {
      return image.get();
    } catch (ExecutionException e) {
      if (e.getCause() instanceof KilnException k) {
        throw k;
      }
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "building the UDF's image failed: " + e.getCause(),
          e.getCause());
    }
  }
}
