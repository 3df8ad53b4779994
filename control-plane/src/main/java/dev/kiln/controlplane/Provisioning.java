package dev.kiln.controlplane;

import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageBuildException;
import dev.kiln.image.ImageBuilder;
import dev.kiln.image.ImageRequest;
import dev.kiln.image.LayerSpec;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.Provisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.ContentKey;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerLauncher;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.UdfException;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The provisioning pipeline of one UDF resource, run asynchronously after ApplyUdfResource has
 * answered: {@code buildImage()} (shared by every tenant with the same content key), {@code
 * placeSandbox()}, {@code startRunners()}. Each step is timed; the resource's {@code ready()}
 * future completes with the runner pool, or with a {@link UdfException} whose message is for the
 * user.
 */
final class Provisioning {
  private static final Logger log = LoggerFactory.getLogger(Provisioning.class);

  private final Runtimes runtimes;
  private final Provisioner provisioner;
  private final RuntimeProbe probe;
  private final ImageInputs inputs;
  private final KilnConfig config;
  private final ExecutorService executor;
  private final Consumer<UdfResource> onSandboxLost;
  private final ConcurrentHashMap<ContentKey, CompletableFuture<BuiltImage>> builds =
      new ConcurrentHashMap<>();
  private final Timer buildTimer;
  private final Timer sandboxTimer;
  private final Timer runnersTimer;
  private final Timer coldTimer;

  Provisioning(
      Runtimes runtimes,
      Provisioner provisioner,
      RuntimeProbe probe,
      ImageInputs inputs,
      KilnConfig config,
      ExecutorService executor,
      MeterRegistry meters,
      Consumer<UdfResource> onSandboxLost) {
    this.runtimes = runtimes;
    this.provisioner = provisioner;
    this.probe = probe;
    this.inputs = inputs;
    this.config = config;
    this.executor = executor;
    this.onSandboxLost = onSandboxLost;
    this.buildTimer = timer(meters, "kiln.image.build", "Image build (or layout lookup) time");
    this.sandboxTimer = timer(meters, "kiln.sandbox.start", "Sandbox start time until init ready");
    this.runnersTimer = timer(meters, "kiln.runners.start", "Runner start time until UDF loaded");
    this.coldTimer = timer(meters, "kiln.provision", "ApplyUdfResource to ready runners");
  }

  private static Timer timer(MeterRegistry meters, String name, String description) {
    return Timer.builder(name)
        .description(description)
        .publishPercentiles(0.5, 0.99)
        .register(meters);
  }

  /**
   * Gets the parts every UDF shares ready in the background: Jib's caches, the base and runner
   * layers in the layout, and their extracted file systems. Without it, the first UDF after a start
   * pays for all of that (seconds, mostly extracting the base image).
   */
  void warmUp() {
    for (Runtimes.Runtime runtime : runtimes.all()) {
      executor.execute(
          () -> {
            long t0 = System.nanoTime();
            try {
              probe.runnerImage(runtime);
              log.info(
                  "warm-up of {} done in {} ms (runner image and layers ready)",
                  runtime.base().reference(),
                  ms(System.nanoTime() - t0));
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            } catch (Exception e) {
              log.warn("warm-up failed (the first UDF will be slower): {}", e.toString());
            }
          });
    }
  }

  /** Starts provisioning in the background; returns at once. */
  void start(UdfResource r) {
    executor.execute(() -> run(r));
  }

  private void run(UdfResource r) {
    try {
      long t0 = System.nanoTime();
      ImageInputs.Prepared prepared;
      try {
        prepared = inputs.prepare(r);
      } catch (StepFailure e) {
        log.warn("udf {} tenant={} failed: {}", r.key.shortForm(), r.tenant, e.getMessage());
        r.fail(e.toUdfException(), e.code());
        return;
      }
      r.inputsNanos = System.nanoTime() - t0;
      BuiltImage image = buildImage(r, prepared);
      Sandbox sandbox = placeSandbox(r, image);
      RunnerPool pool = startRunners(r, sandbox);
      r.markReady(pool);
      long total = System.nanoTime() - r.createdNanos;
      coldTimer.record(total, TimeUnit.NANOSECONDS);
      log.info(
          "udf {} tenant={} handler={} ready in {} ms (imports and packages {} ms, image {} ms,"
              + " sandbox {} ms, runners {} ms)",
          r.key.shortForm(),
          r.tenant,
          r.spec.handler(),
          ms(total),
          ms(r.inputsNanos),
          ms(r.buildNanos),
          ms(r.sandboxNanos),
          ms(r.runnersNanos));
    } catch (UdfException e) {
      log.warn("udf {} tenant={} failed: {}", r.key.shortForm(), r.tenant, e.getMessage());
      r.fail(e);
      stopSandbox(r);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      r.fail(new UdfException(UdfException.Kind.UNAVAILABLE, "Kiln is shutting down"));
      stopSandbox(r);
    } catch (RuntimeException e) {
      log.error("udf {} tenant={} failed unexpectedly", r.key.shortForm(), r.tenant, e);
      r.fail(
          new UdfException(
              UdfException.Kind.INTERNAL,
              "Kiln failed to provision this UDF (an internal error, logged on the Kiln server as"
                  + " key "
                  + r.key.shortForm()
                  + "); run the query again",
              e));
      stopSandbox(r);
    }
  }

  private static void stopSandbox(UdfResource r) {
    Sandbox s = r.sandbox;
    if (s != null) {
      s.close();
    }
  }

  private static long ms(long nanos) {
    return TimeUnit.NANOSECONDS.toMillis(nanos);
  }

  /** Builds the UDF's image once per image key, or finds it in the layout from an earlier run. */
  BuiltImage buildImage(UdfResource r, ImageInputs.Prepared prepared)
      throws UdfException, InterruptedException {
    long t0 = System.nanoTime();
    ContentKey imageKey = prepared.imageKey();
    CompletableFuture<BuiltImage> mine = new CompletableFuture<>();
    CompletableFuture<BuiltImage> build = builds.putIfAbsent(imageKey, mine);
    if (build == null) {
      build = mine;
      try {
        mine.complete(buildOrFind(r, prepared));
      } catch (UdfException | RuntimeException e) {
        builds.remove(imageKey, mine);
        mine.completeExceptionally(e);
      } catch (InterruptedException e) {
        builds.remove(imageKey, mine);
        mine.completeExceptionally(e);
        throw e;
      }
    }
    try {
      BuiltImage image = build.join();
      r.image = image;
      r.buildNanos = System.nanoTime() - t0;
      buildTimer.record(r.buildNanos, TimeUnit.NANOSECONDS);
      return image;
    } catch (CompletionException e) {
      if (e.getCause() instanceof UdfException u) {
        throw u;
      }
      throw new UdfException(
          UdfException.Kind.INTERNAL, "building the UDF's image failed: " + e.getCause(), e);
    }
  }

  private BuiltImage buildOrFind(UdfResource r, ImageInputs.Prepared prepared)
      throws UdfException, InterruptedException {
    String name = "kiln/udf:" + prepared.imageKey().hex();
    ImageBuilder images = r.runtime.images();
    try {
      Optional<BuiltImage> found = images.find(name);
      if (found.isPresent()) {
        return found.get();
      }
      // Package layers first (pre-built blobs, shared by every image that uses the wheel), then
      // the runner, the imports and the code: what changes most often sits on top.
      List<LayerSpec> layers = new ArrayList<>(prepared.packageLayers());
      layers.add(SandboxRunners.layer("kiln-runner", RunnerFiles.runtimeFiles()));
      if (prepared.importsLayer() != null) {
        layers.add(prepared.importsLayer());
      }
      layers.add(SandboxRunners.layer("udf-code", RunnerFiles.udfFiles(r.spec)));
      Map<String, String> env = new java.util.TreeMap<>(RunnerFiles.environment());
      env.put("KILN_IMPORT_DIR", ImageInputs.IMPORT_DIR);
      ImageRequest request =
          new ImageRequest(
              name,
              layers,
              RunnerFiles.initCommand(),
              List.of(),
              env,
              "/",
              Map.of(
                  "dev.kiln.content-key", r.key.hex(),
                  "dev.kiln.image-key", prepared.imageKey().hex(),
                  "dev.kiln.handler", r.spec.handler()));
      return images.build(request);
    } catch (ImageBuildException e) {
      throw new UdfException(
          UdfException.Kind.UNAVAILABLE, "building the UDF's image failed: " + e.getMessage(), e);
    } catch (IOException e) {
      throw new UdfException(
          UdfException.Kind.INTERNAL, "reading the image layout failed: " + e.getMessage(), e);
    }
  }

  /** Starts a gVisor sandbox whose init is the runner's init mode. */
  Sandbox placeSandbox(UdfResource r, BuiltImage image) throws UdfException, InterruptedException {
    long t0 = System.nanoTime();
    SandboxSpec spec =
        new SandboxSpec(
            r.key.shortForm(),
            SandboxRunners.sandboxImage(image),
            new Limits(config.sandboxMemoryBytes(), config.sandboxCpus()),
            List.of());
    try {
      Sandbox sandbox = provisioner.start(spec);
      r.sandbox = sandbox;
      if (r.isClosed()) {
        sandbox.close();
        throw new UdfException(UdfException.Kind.UNAVAILABLE, "the UDF resource was stopped");
      }
      sandbox
          .stopped()
          .thenRun(
              () -> {
                if (!r.isClosed()) {
                  log.warn(
                      "udf {} tenant={}: sandbox {} stopped",
                      r.key.shortForm(),
                      r.tenant,
                      sandbox.id());
                  onSandboxLost.accept(r);
                }
              });
      r.sandboxNanos = System.nanoTime() - t0;
      sandboxTimer.record(r.sandboxNanos, TimeUnit.NANOSECONDS);
      return sandbox;
    } catch (IOException e) {
      throw new UdfException(
          UdfException.Kind.UNAVAILABLE,
          "starting the UDF's gVisor sandbox failed: " + e.getMessage(),
          e);
    }
  }

  /** Starts the runner processes in the sandbox and waits until they have loaded the UDF. */
  RunnerPool startRunners(UdfResource r, Sandbox sandbox)
      throws UdfException, InterruptedException {
    long t0 = System.nanoTime();
    // The pool passes each runner its environment, e.g. its share of the sandbox's memory.
    RunnerLauncher launcher = SandboxRunners.launcher(sandbox);
    int runners = config.effectiveRunnersPerSandbox();
    RunnerPool pool =
        RunnerPool.start(
            r.signature(),
            launcher,
            new RunnerPool.Options(
                runners,
                Duration.ofSeconds(30),
                config.batchTimeout(),
                50,
                RunnerPool.Options.memoryPerRunner(config.sandboxMemoryBytes(), runners)));
    r.runnersNanos = System.nanoTime() - t0;
    runnersTimer.record(r.runnersNanos, TimeUnit.NANOSECONDS);
    return pool;
  }
}
