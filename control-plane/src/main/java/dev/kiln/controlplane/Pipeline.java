package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.PackageRequirement;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.image.BuildImage;
import dev.kiln.image.Runtimes;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxPool;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.ResolvePackages;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.StartRunners;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The provisioning pipeline: one step per module, in this order — resolve the packages (resolver),
 * fetch the imports and wheels (artifact cache), build the image (image builder), place the sandbox
 * (provisioner), start the runners (worker). Each step's result is a value handed to the next; the
 * resource learns the outcome once, at the end. {@link #check} is what a front door runs before it
 * answers: everything that can be known without building anything.
 */
final class Pipeline {
  private static final Logger log = LoggerFactory.getLogger(Pipeline.class);

  private final PipelineSteps steps;
  private final Executor executor;
  private final Consumer<UdfResource> onSandboxLost;
  private final Timer buildTimer;
  private final Timer sandboxTimer;
  private final Timer runnersTimer;
  private final Timer coldTimer;
  private final AtomicInteger inFlight = new AtomicInteger();

  /**
   * @param steps the steps
   * @param executor runs pipelines in the background
   * @param meters where step timings go
   * @param onSandboxLost told when a ready resource's sandbox stops on its own
   */
  Pipeline(
      PipelineSteps steps,
      Executor executor,
      MeterRegistry meters,
      Consumer<UdfResource> onSandboxLost) {
    this.steps = steps;
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
   * Everything that can be checked before building anything, in the steps' order: every requirement
   * is valid PEP 508, the runtime version has a base image, the runners can carry the types.
   * Returns the runtime.
   */
  Runtimes.Runtime check(UdfDefinition definition) throws KilnException {
    for (PackageRequirement r : definition.requirements()) {
      try {
        ResolvePackages.check(r.text());
      } catch (KilnException e) {
        throw e.in("invalid UDF spec: " + r.origin());
      }
    }
    Runtimes.Runtime runtime = steps.runtime(definition.runtimeVersion());
    StartRunners.checkTypes(definition.inputTypes(), definition.resultType());
    return runtime;
  }

  /** Provisions the resource in the background; returns at once. */
  void start(UdfResource r) {
    executor.execute(() -> run(r));
  }

  /** Whether a UDF is being provisioned now (the warm pool waits for it). */
  boolean provisioning() {
    return inFlight.get() > 0;
  }

  private void run(UdfResource r) {
    inFlight.incrementAndGet();
    try {
      Provisioned p = provision(r);
      if (p.adopted() != null) {
        r.pushedImage.complete(Optional.of(p.adopted()));
      } else if (steps.pushes()) {
        p.image()
            .whenComplete(
                (image, e) -> {
                  if (e == null) {
                    executor.execute(() -> push(r, image));
                  } else {
                    r.pushedImage.complete(Optional.empty());
                  }
                });
      } else {
        r.pushedImage.complete(Optional.empty());
      }
      r.complete(p);
      ProvisioningTimings t = p.timings();
      coldTimer.record((long) (t.totalMillis() * 1e6), TimeUnit.NANOSECONDS);
      log.info(
          "udf {} tenant={} handler={} ready in {} ms (packages {} ms, imports and wheels {} ms,"
              + " {}, runners {} ms)",
          r.key.shortForm(),
          r.tenant,
          r.definition.handler(),
          (long) t.totalMillis(),
          (long) t.packagesMillis(),
          (long) t.inputsMillis(),
          p.warm()
              ? "a warm sandbox, its image built after"
              : "image %d ms, sandbox %d ms"
                  .formatted((long) t.imageMillis(), (long) t.sandboxMillis()),
          (long) t.runnersMillis());
    } catch (KilnException e) {
      log.warn("udf {} tenant={} failed: {}", r.key.shortForm(), r.tenant, e.getMessage());
      r.fail(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      r.fail(new KilnException(ErrorCode.SHUTTING_DOWN, "Kiln is shutting down"));
    } catch (RuntimeException e) {
      log.error("udf {} tenant={} failed unexpectedly", r.key.shortForm(), r.tenant, e);
      r.fail(
          new KilnException(
              ErrorCode.INTERNAL,
              "Kiln failed to provision this UDF (an internal error, logged on the Kiln server as"
                  + " key "
                  + r.key.shortForm()
                  + "); run the query again",
              e));
    } finally {
      steps.buildEnded(r);
      inFlight.decrementAndGet();
    }
  }

  /** Pushes the resource's image to the registry; the resource's report shows how it went. */
  private void push(UdfResource r, BuildImage.UdfImage image) {
    long t0 = System.nanoTime();
    try {
      Optional<String> ref = steps.pushImage(r, image);
      log.info(
          "udf {} tenant={}: image pushed as {} in {} ms",
          r.key.shortForm(),
          r.tenant,
          ref.orElse("-"),
          TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
      r.pushedImage.complete(ref);
    } catch (KilnException | RuntimeException e) {
      log.warn("udf {} tenant={}: {}", r.key.shortForm(), r.tenant, e.getMessage());
      r.pushedImage.completeExceptionally(e);
    } catch (InterruptedException e) {
      r.pushedImage.completeExceptionally(e);
    }
  }

  /**
   * The recipe: every step once, in order, each result handed to the next; only the last two when
   * another Kiln replica built the image.
   */
  Provisioned provision(UdfResource r) throws KilnException, InterruptedException {
    long t0 = System.nanoTime();
    Optional<String> elsewhere = steps.imageBuiltElsewhere(r);
    if (elsewhere.isPresent()) {
      return provisionAdopted(r, elsewhere.get(), t0);
    }
    r.progress.enter(UdfProgress.Step.PACKAGES);
    Lock lock = steps.resolvePackages(r);
    long t1 = System.nanoTime();
    r.progress.enter(UdfProgress.Step.WHEELS);
    PipelineSteps.Inputs inputs = steps.fetchInputs(r, lock);
    long t2 = System.nanoTime();
    Optional<SandboxPool.Warm> warm =
        lock.packages().isEmpty() ? steps.takeWarm(r) : steps.takeZygote(r, lock, inputs);
    if (warm.isPresent()) {
      return provisionWarm(r, lock, inputs, warm.get(), t0, t1, t2);
    }
    r.progress.enter(UdfProgress.Step.IMAGE);
    BuildImage.UdfImage image = steps.buildImage(r, lock, inputs);
    long t3 = System.nanoTime();
    buildTimer.record(t3 - t2, TimeUnit.NANOSECONDS);
    r.progress.enter(UdfProgress.Step.SANDBOX);
    Running run = runIn(r, steps.placeSandbox(r, image), t3);
    if (!lock.packages().isEmpty()) {
      steps.offerZygote(r, lock, inputs);
    }
    ProvisioningTimings timings =
        new ProvisioningTimings(
            ms(t1 - t0),
            ms(t2 - t1),
            ms(t3 - t2),
            ms(run.placed() - t3),
            ms(run.started() - run.placed()),
            ms(r.age()));
    return new Provisioned(
        CompletableFuture.completedFuture(image),
        run.sandbox(),
        run.pool(),
        timings,
        false,
        pins(lock));
  }

  /** A UDF whose image another replica built: a sandbox of it (a pod), and the runners. */
  private Provisioned provisionAdopted(UdfResource r, String reference, long t0)
      throws KilnException, InterruptedException {
    long t1 = System.nanoTime();
    r.progress.enter(UdfProgress.Step.SANDBOX);
    Running run = runIn(r, steps.placeSandbox(r, reference), t1);
    return Provisioned.adopted(
        reference,
        run.sandbox(),
        run.pool(),
        new ProvisioningTimings(
            0,
            0,
            ms(t1 - t0),
            ms(run.placed() - t1),
            ms(run.started() - run.placed()),
            ms(r.age())));
  }

  /**
   * A placed sandbox with its runners started, and when each was done ({@link System#nanoTime}).
   */
  private record Running(Sandbox sandbox, RunnerPool pool, long placed, long started) {}

  /**
   * The last two steps in a sandbox just placed (asked for at {@code askedAt}): its time recorded,
   * the resource still wanted, the runners started and timed, the sandbox watched. The sandbox is
   * closed when this fails.
   */
  private Running runIn(UdfResource r, Sandbox sandbox, long askedAt)
      throws KilnException, InterruptedException {
    try {
      long placed = System.nanoTime();
      sandboxTimer.record(placed - askedAt, TimeUnit.NANOSECONDS);
      if (r.isClosed()) {
        throw new KilnException(ErrorCode.SANDBOX_UNAVAILABLE, "the UDF resource was stopped");
      }
      r.progress.enter(UdfProgress.Step.RUNNERS);
      RunnerPool pool = steps.startRunners(r, sandbox);
      long started = System.nanoTime();
      runnersTimer.record(started - placed, TimeUnit.NANOSECONDS);
      watch(r, sandbox);
      return new Running(sandbox, pool, placed, started);
    } catch (KilnException | InterruptedException | RuntimeException e) {
      sandbox.close();
      throw e;
    }
  }

  /** A lock's packages as {@code name==version}, in its order. */
  private static List<String> pins(Lock lock) {
    return lock.packages().stream().map(p -> p.name() + "==" + p.version()).toList();
  }

  /**
   * Keeps zygotes ready for the package sets of {@code recentFirst} (resources of kept definitions,
   * newest first), as their UDFs' own starts would have: the newest {@code max} distinct sets, each
   * resolved and its wheels fetched from the caches. For a server that starts on a data directory a
   * restart or {@code kiln prewarm} left, so that the next new UDF of a set finds its zygote. A
   * definition that cannot be resolved or fetched now (an import whose URL expired) is skipped.
   */
  void offerZygotes(List<UdfResource> recentFirst, int max) throws InterruptedException {
    record Offer(UdfResource r, Lock lock, PipelineSteps.Inputs inputs) {}
    List<Offer> offers = new ArrayList<>();
    Set<String> sets = new HashSet<>();
    for (UdfResource r : recentFirst) {
      if (offers.size() >= max) {
        break;
      }
      try {
        Lock lock = steps.resolvePackages(r);
        if (!lock.packages().isEmpty() && sets.add(WarmSandboxes.zygoteKey(r, lock))) {
          offers.add(new Offer(r, lock, steps.fetchInputs(r, lock)));
        }
      } catch (KilnException e) {
        log.debug("no zygote for udf {}: {}", r.key.shortForm(), e.getMessage());
      }
    }
    // Oldest first: the newest set is then the most recently used one, kept longest.
    for (Offer o : offers.reversed()) {
      steps.offerZygote(o.r(), o.lock(), o.inputs());
      log.info(
          "keeping a zygote ready for {} (known from udf {} tenant={})",
          o.lock().packages(),
          o.r().key.shortForm(),
          o.r().tenant);
    }
  }

  /**
   * A UDF in a warm sandbox (from the warm pool without packages, or its lock's zygote with them):
   * its runners get the code, imports and variables its image would hold, and the image is built in
   * the background (another sandbox of the UDF, after a scale-out or a restart, starts from it).
   */
  private Provisioned provisionWarm(
      UdfResource r,
      Lock lock,
      PipelineSteps.Inputs inputs,
      SandboxPool.Warm warm,
      long t0,
      long t1,
      long t2)
      throws KilnException, InterruptedException {
    Sandbox sandbox = warm.sandbox();
    try {
      if (r.isClosed()) {
        throw new KilnException(ErrorCode.SANDBOX_UNAVAILABLE, "the UDF resource was stopped");
      }
      r.progress.enter(UdfProgress.Step.RUNNERS);
      RunnerPool pool = steps.startWarmRunners(r, warm, inputs);
      long t3 = System.nanoTime();
      runnersTimer.record(t3 - t2, TimeUnit.NANOSECONDS);
      CompletableFuture<BuildImage.UdfImage> image = new CompletableFuture<>();
      executor.execute(
          () -> {
            try {
              image.complete(steps.buildImage(r, lock, inputs));
            } catch (KilnException | RuntimeException e) {
              log.warn(
                  "udf {} tenant={}: building its image after a warm start failed (another"
                      + " sandbox of it cannot start until a build succeeds): {}",
                  r.key.shortForm(),
                  r.tenant,
                  e.getMessage());
              image.completeExceptionally(e);
            } catch (InterruptedException e) {
              image.completeExceptionally(e);
            }
          });
      watch(r, sandbox);
      ProvisioningTimings timings =
          new ProvisioningTimings(ms(t1 - t0), ms(t2 - t1), 0, 0, ms(t3 - t2), ms(r.age()));
      return new Provisioned(image, sandbox, pool, timings, true, pins(lock));
    } catch (KilnException | InterruptedException | RuntimeException e) {
      sandbox.close();
      throw e;
    }
  }

  /**
   * Another sandbox for a ready resource, from the image it already has: the sandbox and runner
   * steps again. A sandbox added this way that stops on its own is dropped from the resource.
   */
  Provisioned addSandbox(UdfResource r) throws KilnException, InterruptedException {
    Provisioned first =
        r.provisioned()
            .orElseThrow(
                () ->
                    new KilnException(
                        ErrorCode.SANDBOX_UNAVAILABLE, "the UDF resource is not ready yet"));
    long t0 = System.nanoTime();
    Sandbox sandbox =
        first.adopted() != null
            ? steps.placeSandbox(r, first.adopted())
            : steps.placeSandbox(r, first.awaitImage());
    try {
      long t1 = System.nanoTime();
      RunnerPool pool = steps.startRunners(r, sandbox);
      long t2 = System.nanoTime();
      Provisioned p =
          new Provisioned(
              first.image(),
              sandbox,
              pool,
              new ProvisioningTimings(0, 0, 0, ms(t1 - t0), ms(t2 - t1), ms(t2 - t0)),
              false,
              first.lock(),
              first.adopted());
      sandbox.stopped().thenRun(() -> r.removeSandbox(p));
      return p;
    } catch (KilnException | InterruptedException | RuntimeException e) {
      sandbox.close();
      throw e;
    }
  }

  /** A sandbox that stops on its own once the resource is ready is reported. */
  private void watch(UdfResource r, Sandbox sandbox) {
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
  }

  private static double ms(long nanos) {
    return nanos / 1e6;
  }

  private static double ms(Duration d) {
    return d.toNanos() / 1e6;
  }
}
