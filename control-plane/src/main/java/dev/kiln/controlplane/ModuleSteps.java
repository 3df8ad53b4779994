package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.base.SingleFlight;
import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.definition.StagedImport;
import dev.kiln.egress.EgressProxy;
import dev.kiln.image.BaseFacts;
import dev.kiln.image.BuildImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.RegistryLogins;
import dev.kiln.image.RegistryPush;
import dev.kiln.image.Runtimes;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxPool;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.LockedPackage;
import dev.kiln.resolver.ResolvePackages;
import dev.kiln.resolver.TargetEnvironment;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.StartRunners;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Deque;
import java.util.List;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The pipeline's steps as the modules implement them: each method hands the values the pipeline
 * holds to one module's step, in that module's own types. No step's work is done here.
 */
final class ModuleSteps implements PipelineSteps {
  private static final Logger log = LoggerFactory.getLogger(ModuleSteps.class);

  private final Runtimes runtimes;
  private final BaseFacts bases;
  private final ResolvePackages packages;
  private final FetchInputs inputs;
  private final BuildImage images;
  private final PlaceSandbox sandboxes;
  private final StartRunners runners;
  private final WarmSandboxes warm;
  private final ImageRegistry registry;
  private final KubernetesBackend cluster;
  private final EgressSandboxes egress;

  /** How long a replica waits for the image another replica builds before it gives up. */
  static final Duration BUILD_WAIT = Duration.ofMinutes(15);

  /** Image references by manifest digest, each pushed once. */
  private final SingleFlight<String, String> pushed = SingleFlight.remembering();

  /**
   * Where images are pushed: {@code repository} ({@code HOST[:PORT]/REPOSITORY}) through {@code
   * push}.
   */
  record ImageRegistry(RegistryPush push, String repository) {

    /**
     * Where {@code --registry} says built images go, logging in as configured; null for nowhere.
     * Compressed layers are kept in {@code layers}; the push is closed with {@code closeables}.
     */
    static ImageRegistry open(KilnConfig config, Path layers, Deque<AutoCloseable> closeables)
        throws IOException {
      if (config.registry() == null) {
        return null;
      }
      RegistryLogins logins =
          config.registryUsername() == null
              ? RegistryLogins.dockerConfig(RegistryLogins.defaultDockerConfig())
              : RegistryLogins.given(
                  config.registry().substring(0, config.registry().indexOf('/')),
                  config.registryUsername(),
                  Files.readString(config.registryPasswordFile()).strip());
      // gzip level 1: a first push of a large package layer costs seconds at the default level.
      RegistryPush push = new RegistryPush(layers, 1, config.registryInsecure(), logins);
      closeables.push(push);
      return new ImageRegistry(push, config.registry());
    }

    /**
     * Pushes {@code image} (in {@code runtime}'s image layout), tagged with the tag of its name
     * {@code name} ({@code kiln/udf:<tag>}); returns its reference by digest.
     */
    String push(BuiltImage image, String name, Runtimes.Runtime runtime)
        throws KilnException, InterruptedException {
      String tag = name.substring(name.lastIndexOf(':') + 1);
      return push.push(image, runtime.images().configBlob(image), repository + ":" + tag)
          .reference();
    }
  }

  /**
   * @param warm the sandboxes started ahead of need
   * @param registry where built images are pushed, or null for nowhere
   * @param cluster the Kubernetes cluster whose pods (pulling the pushed image) the sandboxes are,
   *     and whose Kiln replicas build each image once; null when sandboxes are local
   * @param egress where the sandboxes of UDFs with an egress allow-list are placed
   */
  ModuleSteps(
      Runtimes runtimes,
      BaseFacts bases,
      ResolvePackages packages,
      FetchInputs inputs,
      BuildImage images,
      PlaceSandbox sandboxes,
      StartRunners runners,
      WarmSandboxes warm,
      ImageRegistry registry,
      KubernetesBackend cluster,
      EgressSandboxes egress) {
    this.runtimes = runtimes;
    this.bases = bases;
    this.packages = packages;
    this.inputs = inputs;
    this.images = images;
    this.sandboxes = sandboxes;
    this.runners = runners;
    this.warm = warm;
    this.registry = registry;
    this.cluster = cluster;
    this.egress = egress;
  }

  /**
   * Gets what every UDF shares ready in the background: each base's runner image and its layers on
   * the host, and the base's Python (which resolving packages needs; probed in a sandbox once per
   * base). Without it, the first UDF after a start pays for that (seconds, mostly extracting the
   * base image).
   */
  void warmUp(Executor executor) {
    for (Runtimes.Runtime runtime : runtimes.all()) {
      executor.execute(
          () -> {
            long t0 = System.nanoTime();
            try {
              bases.runnerImage(runtime);
              bases.python(runtime);
              log.info(
                  "warm-up of {} done in {} ms (runner image, layers and Python ready)",
                  runtime.base().reference(),
                  TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            } catch (KilnException | RuntimeException e) {
              log.warn("warm-up failed (the first UDF will be slower): {}", e.toString());
            }
          });
    }
  }

  @Override
  public Runtimes.Runtime runtime(String runtimeVersion) throws KilnException {
    return runtimes.forVersion(runtimeVersion);
  }

  @Override
  public Lock resolvePackages(UdfResource r) throws KilnException, InterruptedException {
    return packages.resolve(r.definition.requirementTexts(), python(r));
  }

  @Override
  public Inputs fetchInputs(UdfResource r, Lock lock) throws KilnException, InterruptedException {
    List<FetchInputs.Fetched> imports =
        inputs.imports(
            r.tenant.name(), r.definition.imports().stream().map(ModuleSteps::source).toList());
    List<FetchInputs.Fetched> wheels =
        inputs.blobs(lock.packages().stream().map(p -> download(r, p)).toList());
    return new Inputs(imports, wheels);
  }

  @Override
  public BuildImage.UdfImage buildImage(UdfResource r, Lock lock, Inputs in)
      throws KilnException, InterruptedException {
    return images.build(
        new BuildImage.Recipe(
            r.runtime,
            lock.packages().isEmpty() ? null : python(r),
            r.key,
            r.definition.handler(),
            RunnerFiles.udfFiles(r.definition.spec()),
            lock,
            in.wheels(),
            in.imports(),
            bases));
  }

  @Override
  public boolean pushes() {
    return registry != null;
  }

  @Override
  public Optional<String> pushImage(UdfResource r, BuildImage.UdfImage image)
      throws KilnException, InterruptedException {
    if (registry == null) {
      return Optional.empty();
    }
    // Once per image: a pod's sandbox and the report share that push.
    return Optional.of(
        pushed.run(
            image.image().manifestDigest().toString(),
            () -> registry.push(image.image(), BuildImage.imageName(image.key()), r.runtime)));
  }

  @Override
  public Sandbox placeSandbox(UdfResource r, BuildImage.UdfImage image)
      throws KilnException, InterruptedException {
    if (cluster != null) {
      return placeSandbox(
          r,
          pushImage(r, image)
              .orElseThrow(() -> new IllegalStateException("sandbox pods need --registry")));
    }
    SandboxSpec spec =
        new SandboxSpec(
            r.key.shortForm(),
            SandboxRunners.sandboxImage(image.image()),
            r.sizing.limits(),
            List.of());
    if (r.egress.isEmpty()) {
      return sandboxes.place(spec);
    }
    return egress.place(sandboxes, spec, egressClient(r));
  }

  /**
   * A pod pulls the image from the registry; its variables are the pod's. With an egress allow-list
   * it may reach the egress proxy Deployment, with credentials the proxy checks.
   */
  @Override
  public Sandbox placeSandbox(UdfResource r, String reference)
      throws KilnException, InterruptedException {
    List<String> env = new ArrayList<>();
    new TreeMap<>(r.env).forEach((k, v) -> env.add(k + "=" + v));
    // One UdfWorker per resource, as the registry keeps them: per tenant and definition.
    SandboxSpec spec =
        new SandboxSpec(
                ClusterDefinitions.workerOf(r.key),
                SandboxRunners.podImage(reference, cluster.runnerPort()),
                r.sizing.limits(),
                env)
            .withOwner(r.tenant.name());
    if (!r.egress.isEmpty()) {
      spec = spec.withEgress(cluster.egressEnvironment(egressClient(r)));
    }
    return sandboxes.place(spec);
  }

  /** Who a UDF's connections through the egress proxy are, and what they may reach. */
  private static EgressProxy.Client egressClient(UdfResource r) {
    return new EgressProxy.Client(
        r.tenant.name(),
        r.owner != null ? r.owner : r.definition.handler(),
        r.key.hex(),
        r.egress.policy(),
        r.egress.policyFile());
  }

  @Override
  public Optional<String> imageBuiltElsewhere(UdfResource r)
      throws KilnException, InterruptedException {
    if (cluster == null) {
      return Optional.empty();
    }
    try {
      return cluster
          .builds()
          .imageOrHold(r.tenant.name(), ClusterDefinitions.workerOf(r.key), BUILD_WAIT);
    } catch (IOException e) {
      throw new KilnException(ErrorCode.IMAGE_BUILD_FAILED, e.getMessage(), e);
    }
  }

  @Override
  public void buildEnded(UdfResource r) {
    if (cluster != null) {
      cluster.builds().release(r.tenant.name(), ClusterDefinitions.workerOf(r.key));
    }
  }

  @Override
  public RunnerPool startRunners(UdfResource r, Sandbox sandbox)
      throws KilnException, InterruptedException {
    return runners.start(
        r.signature(),
        SandboxRunners.launcher(sandbox, r.env),
        r.sizing.runners(),
        r.sizing.memoryBytes());
  }

  @Override
  public Optional<SandboxPool.Warm> takeWarm(UdfResource r) {
    // Sandboxes started ahead of need have no network: a UDF with egress starts its own.
    return r.egress.isEmpty() ? warm.takeWarm(r) : Optional.empty();
  }

  @Override
  public Optional<SandboxPool.Warm> takeZygote(UdfResource r, Lock lock, Inputs in) {
    return r.egress.isEmpty() ? warm.takeZygote(r, lock, in) : Optional.empty();
  }

  @Override
  public void offerZygote(UdfResource r, Lock lock, Inputs in) {
    if (r.egress.isEmpty()) {
      warm.offerZygote(r, lock, in);
    }
  }

  @Override
  public RunnerPool startWarmRunners(UdfResource r, SandboxPool.Warm warm, Inputs in)
      throws KilnException, InterruptedException {
    return runners.start(
        r.signature(),
        SandboxRunners.warmLauncher(
            warm,
            r.env,
            RunnerFiles.udfFiles(r.definition.spec()),
            BuildImage.importFiles(in.imports()),
            BuildImage.udfEnvironment()),
        r.sizing.runners(),
        r.sizing.memoryBytes());
  }

  /** The base's Python, needed only to resolve and install packages. */
  private TargetEnvironment python(UdfResource r) throws KilnException, InterruptedException {
    return r.definition.requirements().isEmpty() ? null : bases.python(r.runtime);
  }

  private static FetchInputs.Import source(StagedImport imp) {
    return new FetchInputs.Import(imp.location(), imp.url(), imp.headers(), imp.tag());
  }

  /** A wheel's download, its bytes counted in the resource's progress. */
  private FetchInputs.Download download(UdfResource r, LockedPackage pkg) {
    return new FetchInputs.Download(
        Digest.parse(pkg.sha256()),
        pkg.filename(),
        out -> packages.download(pkg, r.progress.counting(out)),
        ErrorCode.PACKAGE_INDEX_UNAVAILABLE);
  }
}
