package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.cache.FetchInputs;
import dev.kiln.image.BuildImage;
import dev.kiln.image.Runtimes;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxPool;
import dev.kiln.resolver.Lock;
import dev.kiln.worker.RunnerPool;
import java.util.List;
import java.util.Optional;

/**
 * The provisioning pipeline's steps as {@link Pipeline} calls them, one per module, each taking the
 * resource and the values the steps before it made. {@link ModuleSteps} is the real one; tests give
 * the pipeline fakes of its neighbours.
 */
interface PipelineSteps {

  /** The base image a {@code runtime_version} maps to (image builder). */
  Runtimes.Runtime runtime(String runtimeVersion) throws KilnException;

  /** The UDF's packages, resolved to a lock for its base's Python (resolver). */
  Lock resolvePackages(UdfResource r) throws KilnException, InterruptedException;

  /** The UDF's staged imports and its lock's wheels, as local files (artifact cache). */
  Inputs fetchInputs(UdfResource r, Lock lock) throws KilnException, InterruptedException;

  /** The UDF's image (image builder). */
  BuildImage.UdfImage buildImage(UdfResource r, Lock lock, Inputs inputs)
      throws KilnException, InterruptedException;

  /** A sandbox of the image, started (provisioner). */
  Sandbox placeSandbox(UdfResource r, BuildImage.UdfImage image)
      throws KilnException, InterruptedException;

  /**
   * The registry reference of the UDF's image when another Kiln replica built it (replicas sharing
   * a cluster's pods): at once when it is there, after a wait while another replica builds it;
   * empty when this replica is to build it (it then holds the build until {@link #buildEnded}), and
   * always on a single server.
   */
  default Optional<String> imageBuiltElsewhere(UdfResource r)
      throws KilnException, InterruptedException {
    return Optional.empty();
  }

  /** The pipeline of the UDF ended here, its image built or not: another replica may build it. */
  default void buildEnded(UdfResource r) {}

  /** A sandbox of the image another replica built, by its registry reference (provisioner). */
  default Sandbox placeSandbox(UdfResource r, String reference)
      throws KilnException, InterruptedException {
    throw new UnsupportedOperationException("these steps run no image built elsewhere");
  }

  /** Whether built images are pushed to a registry ({@link #pushImage}). */
  default boolean pushes() {
    return false;
  }

  /**
   * Pushes the UDF's image to the registry (image builder); returns its reference by digest, or
   * empty when there is no registry.
   */
  default Optional<String> pushImage(UdfResource r, BuildImage.UdfImage image)
      throws KilnException, InterruptedException {
    return Optional.empty();
  }

  /** The UDF's runners in the sandbox, loaded (worker). */
  RunnerPool startRunners(UdfResource r, Sandbox sandbox)
      throws KilnException, InterruptedException;

  /**
   * A warm sandbox for the UDF, when the pool has one that fits it (provisioner); empty otherwise,
   * and always without a pool.
   */
  default Optional<SandboxPool.Warm> takeWarm(UdfResource r) {
    return Optional.empty();
  }

  /**
   * A sandbox kept ready with the UDF's packages imported (a zygote of its lock), when there is one
   * that fits the UDF (provisioner); empty otherwise, and always without zygotes.
   */
  default Optional<SandboxPool.Warm> takeZygote(UdfResource r, Lock lock, Inputs inputs) {
    return Optional.empty();
  }

  /**
   * Keeps a zygote of the UDF's lock ready from now on, for the next UDF with those packages (in
   * the background; nothing without zygotes).
   */
  default void offerZygote(UdfResource r, Lock lock, Inputs inputs) {}

  /** The UDF's runners in a warm sandbox, handed its code, imports and variables (worker). */
  default RunnerPool startWarmRunners(UdfResource r, SandboxPool.Warm warm, Inputs inputs)
      throws KilnException, InterruptedException {
    throw new UnsupportedOperationException("these steps have no warm pool");
  }

  /** What the fetch step hands the image step. */
  record Inputs(List<FetchInputs.Fetched> imports, List<FetchInputs.Fetched> wheels) {
    public Inputs {
      imports = List.copyOf(imports);
      wheels = List.copyOf(wheels);
    }
  }
}
