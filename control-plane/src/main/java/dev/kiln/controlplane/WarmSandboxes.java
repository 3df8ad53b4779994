package dev.kiln.controlplane;

import static java.util.stream.Collectors.joining;

import dev.kiln.cache.FetchInputs;
import dev.kiln.image.BaseFacts;
import dev.kiln.image.BuildImage;
import dev.kiln.image.LayerFile;
import dev.kiln.image.Runtimes;
import dev.kiln.image.WheelModules;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxPool;
import dev.kiln.provisioner.Zygotes;
import dev.kiln.resolver.Lock;
import dev.kiln.worker.PooledRunners;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.function.BooleanSupplier;
import java.util.function.ToDoubleFunction;

/**
 * The sandboxes started ahead of need, wired: the warm pool ({@code --warm-pool}: the default
 * runtime's runner image, for new UDFs without packages) and the zygotes ({@code --zygotes}: one
 * sandbox per package set in use, its runners having imported the packages, for the next new UDF
 * with that set). Their metrics, and their room given back first when a start needs it.
 */
final class WarmSandboxes implements AutoCloseable {
  private final SandboxPool pool;
  private final Runtimes.Runtime poolRuntime;
  private final Zygotes zygotes;
  private final BaseFacts bases;
  private final BuildImage images;

  private WarmSandboxes(
      SandboxPool pool,
      Runtimes.Runtime poolRuntime,
      Zygotes zygotes,
      BaseFacts bases,
      BuildImage images) {
    this.pool = pool;
    this.poolRuntime = poolRuntime;
    this.zygotes = zygotes;
    this.bases = bases;
    this.images = images;
  }

  /**
   * The warm pool of {@code warmPool} sandboxes of {@code sizing} from {@code poolRuntime}'s runner
   * image, and zygotes for {@code zygotes} package sets (0: none of either); nothing starts before
   * {@link #start}.
   */
  static WarmSandboxes of(
      int warmPool,
      int zygotes,
      PlaceSandbox sandboxes,
      BaseFacts bases,
      BuildImage images,
      Runtimes.Runtime poolRuntime,
      Sizing sizing,
      MeterRegistry meters) {
    SandboxPool pool =
        warmPool == 0
            ? null
            : new SandboxPool(
                sandboxes,
                () ->
                    SandboxRunners.warmRecipe(
                        bases.runnerImage(poolRuntime), sizing.limits(), sizing.runners()),
                SandboxRunners::awaitWarm,
                warmPool);
    Zygotes z = zygotes == 0 ? null : new Zygotes(sandboxes, SandboxRunners::awaitWarm, zygotes);
    WarmSandboxes warm = new WarmSandboxes(pool, poolRuntime, z, bases, images);
    warm.register(meters);
    return warm;
  }

  /** Registered with the pool or zygotes off too (they read 0): a dashboard shows a zero line. */
  private void register(MeterRegistry meters) {
    Gauge.builder("kiln.warm.pool.ready", this, w -> w.poolStat(SandboxPool.Stats::ready))
        .description("warm sandboxes ready for new UDFs (--warm-pool)")
        .register(meters);
    FunctionCounter.builder("kiln.warm.pool.hits", this, w -> w.poolStat(SandboxPool.Stats::hits))
        .description("new UDFs placed in a warm sandbox")
        .register(meters);
    FunctionCounter.builder(
            "kiln.warm.pool.misses", this, w -> w.poolStat(SandboxPool.Stats::misses))
        .description("new UDFs without packages that found no warm sandbox of their size")
        .register(meters);
    FunctionCounter.builder(
            "kiln.warm.pool.refills", this, w -> w.poolStat(SandboxPool.Stats::refills))
        .description("warm sandboxes started and made ready")
        .register(meters);
    FunctionCounter.builder(
            "kiln.warm.pool.refills.deferred", this, w -> w.poolStat(SandboxPool.Stats::deferred))
        .description("refills that waited for calls to pause first (at most 10 s each)")
        .register(meters);
    Gauge.builder(
            "kiln.warm.pool.refill.seconds",
            this,
            w -> w.poolStat(SandboxPool.Stats::lastMillis) / 1e3)
        .description("how long the last refill took (sandbox start and warm runners)")
        .register(meters);
    Gauge.builder("kiln.zygotes.ready", this, w -> w.zygoteStat(Zygotes.Stats::ready))
        .description("sandboxes ready with a package set imported (--zygotes)")
        .register(meters);
    Gauge.builder("kiln.zygotes.package.sets", this, w -> w.zygoteStat(Zygotes.Stats::keys))
        .description("package sets kept ready (at most --zygotes)")
        .register(meters);
    FunctionCounter.builder("kiln.zygotes.hits", this, w -> w.zygoteStat(Zygotes.Stats::hits))
        .description("new UDFs with packages placed in a zygote")
        .register(meters);
    FunctionCounter.builder("kiln.zygotes.misses", this, w -> w.zygoteStat(Zygotes.Stats::misses))
        .description("new UDFs with packages that found no zygote of their package set")
        .register(meters);
  }

  private double poolStat(ToDoubleFunction<SandboxPool.Stats> stat) {
    return pool == null ? 0 : stat.applyAsDouble(pool.stats());
  }

  private double zygoteStat(ToDoubleFunction<Zygotes.Stats> stat) {
    return zygotes == null ? 0 : stat.applyAsDouble(zygotes.stats());
  }

  /** A sandbox started ahead of need and ready, and what it is for: for {@code kiln ps}. */
  record Ready(String what, Sandbox sandbox) {}

  /** Every sandbox ready now: the warm pool's, then the zygotes'. */
  List<Ready> ready() {
    List<Ready> all = new ArrayList<>();
    if (pool != null) {
      pool.readySandboxes().forEach(s -> all.add(new Ready("(warm pool)", s)));
    }
    if (zygotes != null) {
      zygotes.ready().forEach(z -> all.add(new Ready("(zygote) " + z.label(), z.sandbox())));
    }
    return all;
  }

  /**
   * Starts filling in the background; refills wait while {@code busy} holds, and while {@code
   * serving} holds for at most {@code maxDefer} each (see {@link SandboxPool#deferWhile}).
   */
  void start(BooleanSupplier busy, BooleanSupplier serving, Duration maxDefer) {
    if (pool != null) {
      pool.yieldTo(busy);
      pool.deferWhile(serving, maxDefer);
      pool.start();
    }
    if (zygotes != null) {
      zygotes.yieldTo(busy);
      zygotes.deferWhile(serving, maxDefer);
    }
  }

  /** A warm sandbox for a UDF without packages, when one of its runtime and size is ready. */
  Optional<SandboxPool.Warm> takeWarm(UdfResource r) {
    if (pool == null || !r.runtime.equals(poolRuntime)) {
      return Optional.empty();
    }
    return pool.take(r.sizing.limits());
  }

  /**
   * The zygote of the UDF's package set, when one of its size is ready and the UDF can use runners
   * that imported the packages before it was known ({@link PooledRunners#preloadFits}).
   */
  Optional<SandboxPool.Warm> takeZygote(UdfResource r, Lock lock, PipelineSteps.Inputs in) {
    if (zygotes == null) {
      return Optional.empty();
    }
    List<String> importNames =
        BuildImage.importFiles(in.imports()).stream().map(WarmSandboxes::fileName).toList();
    try {
      if (!PooledRunners.preloadFits(r.env, importNames, modules(in.wheels()))) {
        return Optional.empty();
      }
    } catch (UncheckedIOException e) {
      return Optional.empty(); // a wheel that cannot be read here: the image build will say why
    }
    return zygotes.take(zygoteKey(r, lock), r.sizing.limits());
  }

  /** Keeps a zygote of the UDF's package set (and size) ready from now on. */
  void offerZygote(UdfResource r, Lock lock, PipelineSteps.Inputs in) {
    if (zygotes == null) {
      return;
    }
    // The recipe keeps what it needs, not the resource (which may be gone long before the set).
    List<FetchInputs.Fetched> wheels = in.wheels();
    Runtimes.Runtime runtime = r.runtime;
    Limits limits = r.sizing.limits();
    int runners = r.sizing.runners();
    zygotes.offer(
        zygoteKey(r, lock),
        lock.packages().stream().map(p -> p.name() + "==" + p.version()).collect(joining(" ")),
        () ->
            SandboxRunners.zygoteRecipe(
                images.packagesImage(runtime, bases.python(runtime), lock, wheels).image(),
                limits,
                runners,
                modules(wheels)));
  }

  /** Stops one ready sandbox (a zygote first, then a warm one) to give its room to a start. */
  Optional<CompletableFuture<Void>> discardOne() {
    Optional<CompletableFuture<Void>> d = zygotes == null ? Optional.empty() : zygotes.discardOne();
    return d.isPresent() || pool == null ? d : pool.discardOne();
  }

  /**
   * Replaces the oldest ready warm sandbox (not a zygote) with a fresh one, in the background (see
   * {@link SandboxPool#recycleOne}); false when the pool is off or holds none.
   */
  boolean recycleWarm() {
    return pool != null && pool.recycleOne();
  }

  /** What makes two UDFs' zygotes the same: runtime, package lock, sandbox size and runners. */
  static String zygoteKey(UdfResource r, Lock lock) {
    return r.runtime.digest()
        + " "
        + BuildImage.packagesKey(lock).hex()
        + " "
        + r.sizing.limits()
        + " "
        + r.sizing.runners();
  }

  /** The modules the lock's wheels install at the top of site-packages. */
  private static Set<String> modules(List<FetchInputs.Fetched> wheels) {
    Set<String> all = new TreeSet<>();
    for (FetchInputs.Fetched w : wheels) {
      try {
        all.addAll(WheelModules.topLevel(w.file()));
      } catch (IOException e) {
        throw new UncheckedIOException("reading the wheel " + w.name() + " failed", e);
      }
    }
    return all;
  }

  private static String fileName(LayerFile f) {
    String p = f.pathInImage();
    return p.substring(p.lastIndexOf('/') + 1);
  }

  @Override
  public void close() {
    if (zygotes != null) {
      zygotes.close();
    }
    if (pool != null) {
      pool.close();
    }
  }
}
