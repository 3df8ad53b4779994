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
 * was placed in a warm sandbox), the sandbox it runs in, the runners that serve it, where the time
 * went, and the packages it was locked to ({@code name==version}, in the lock's order).
 */
record Provisioned(
    CompletableFuture<BuildImage.UdfImage> image,
    Sandbox sandbox,
    RunnerPool pool,
    ProvisioningTimings timings,
    boolean warm,
    List<String> lock) {

  /** The image when it is built; empty while it is being built or when its build failed. */
  Optional<BuildImage.UdfImage> builtImage() {
    return image.isDone() && !image.isCompletedExceptionally()
        ? Optional.of(image.join())
        : Optional.empty();
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
