package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.cache.ArtifactCache;
import dev.kiln.cache.FetchInputs;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import dev.kiln.image.BaseFacts;
import dev.kiln.image.BuildImage;
import dev.kiln.image.ImageHost;
import dev.kiln.image.RunnerLayer;
import dev.kiln.image.Runtimes;
import dev.kiln.image.WheelLayers;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.Provisioner;
import dev.kiln.provisioner.RunscProvisioner;
import dev.kiln.provisioner.SandboxBudget;
import dev.kiln.resolver.PackageResolver;
import dev.kiln.resolver.ResolvePackages;
import dev.kiln.worker.FlightEndpoint;
import dev.kiln.worker.StartRunners;
import dev.kiln.worker.Tokens;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.netty.NettyServerBuilder;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.binder.jvm.JvmGcMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmMemoryMetrics;
import io.micrometer.core.instrument.binder.jvm.JvmThreadMetrics;
import io.micrometer.core.instrument.binder.system.ProcessorMetrics;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.time.InstantSource;
import java.util.ArrayDeque;
import java.util.Deque;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.ToIntBiFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The composition root: one Kiln server with its provisioning API (gRPC), Flight endpoint, admin
 * HTTP port, image builder and sandbox provisioner, all under one data directory. {@link #close()}
 * stops everything in reverse order and leaves no sandbox or mount behind.
 */
public final class KilnServer implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(KilnServer.class);

  /**
   * What one sandbox holds beside its memory limit (runsc's sentry and gofer processes, their page
   * tables), counted against the node budget. Measured: see the README's budget section.
   */
  static final long SANDBOX_OVERHEAD_BYTES = 64L << 20;

  /** Calls this far apart count as one stretch of serving, which warm-pool refills wait out. */
  static final Duration SERVING_QUIET = Duration.ofMillis(50);

  /** The longest a warm-pool or zygote refill waits for calls to pause. */
  static final Duration REFILL_DEFER = Duration.ofSeconds(10);

  /** How often unused files are collected ({@link DiskCollector}). */
  static final Duration DISK_SWEEP = Duration.ofMinutes(10);

  private final KilnConfig config;
  private final Deque<AutoCloseable> closeables = new ArrayDeque<>();
  private final AtomicBoolean closed = new AtomicBoolean();
  private Server grpc;
  private volatile FlightEndpoint flight;
  private AdminServer admin;
  private UdfRegistry registry;
  private DiskCollector disk;
  private WarmSandboxes warm;
  private BuildImage images;
  private String endpoint;
  private String baseImageDigest;
  private PrometheusMeterRegistry meters;

  private KilnServer(KilnConfig config) {
    this.config = config;
  }

  /** Starts every part; on failure, stops what was started and rethrows. */
  public static KilnServer start(KilnConfig config) throws KilnException, IOException {
    KilnServer server = new KilnServer(config);
    try {
      server.startAll();
      return server;
    } catch (KilnException | IOException | RuntimeException e) {
      server.close();
      throw e;
    }
  }

  private void startAll() throws KilnException, IOException {
    long t0 = System.nanoTime();
    Path data = config.dataDir();
    Files.createDirectories(data);
    lockDataDir(data);

    meters = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
    new JvmMemoryMetrics().bindTo(meters);
    new JvmThreadMetrics().bindTo(meters);
    new ProcessorMetrics().bindTo(meters);
    JvmGcMetrics gc = new JvmGcMetrics();
    gc.bindTo(meters);
    closeables.push(gc);

    Runtimes runtimes =
        Runtimes.open(
            config.runtimes(),
            config.baseImage(),
            config.baseImage().equals(KilnConfig.defaultBaseImage())
                ? "build it with bin/build-base-image (bin/kiln serve does this on first use)"
                : "pass an image archive or a registry reference",
            data.resolve("images"));
    closeables.push(runtimes);
    baseImageDigest = runtimes.all().get(0).digest();

    // With --kubernetes, sandboxes are pods; this machine runs gVisor only to compile byte code.
    boolean localGvisor = !config.kubernetes() || PodImageHost.canRunGvisor(config.runsc());
    Provisioner provisioner =
        localGvisor
            ? RunscProvisioner.builder()
                .runsc(config.runsc())
                .platform(config.runscPlatform())
                .workDir(data.resolve("provisioner"))
                .build()
            : Provisioner.none(config.runsc() + " is not there, or Kiln does not run as root");
    closeables.push(provisioner);

    ArtifactCache cache =
        ArtifactCache.open(ModuleConfigs.cache(config, data.resolve("cache")), meters);
    closeables.push(cache);
    PackageResolver packages =
        new PackageResolver(ModuleConfigs.index(config), data.resolve("packages"));
    closeables.push(packages);

    ExecutorService pipelines = Executors.newVirtualThreadPerTaskExecutor();
    closeables.push(() -> shutdown(pipelines));
    RunnerLayer runner = SandboxRunners.runnerLayer();
    WheelLayers wheelLayers = new WheelLayers(data.resolve("wheel-layers"));
    SandboxBudget budget =
        new SandboxBudget(
            config.maxSandboxes(), config.maxSandboxMemoryBytes(), SANDBOX_OVERHEAD_BYTES);
    Gauge.builder("kiln.budget.sandboxes", budget, b -> b.usage().sandboxes())
        .description("sandboxes counted against the node budget")
        .register(meters);
    Gauge.builder("kiln.budget.memory.bytes", budget, b -> b.usage().memoryBytes())
        .description("memory held by sandboxes (limits plus gVisor's own), against the budget")
        .register(meters);
    Gauge.builder("kiln.budget.memory.max.bytes", budget, SandboxBudget::maxMemoryBytes)
        .description("the node's sandbox memory budget (--max-sandbox-memory)")
        .register(meters);
    // Local sandboxes run what building images needs (a base's Python, byte code); a UDF's run here
    // too, or as pods of a cluster (--kubernetes: no node budget, no warm pool or zygotes here).
    PlaceSandbox local = new PlaceSandbox(provisioner, budget);
    KubernetesBackend cluster =
        config.kubernetes() ? KubernetesBackend.start(config, closeables) : null;
    Provisioner udfProvisioner = cluster != null ? cluster.pods() : provisioner;
    // Replicas share their token secret and definitions through the cluster; a server keeps its
    // own.
    Tokens tokens =
        cluster != null ? cluster.tokens() : Tokens.loadOrCreate(data.resolve("token-secret"));
    PlaceSandbox sandboxes = config.kubernetes() ? new PlaceSandbox(udfProvisioner) : local;
    ModuleSteps.ImageRegistry pushes =
        ModuleSteps.ImageRegistry.open(config, data.resolve("registry-layers"), closeables);
    // Where building images runs a base's Python: a local sandbox, or a pod of the cluster.
    ImageHost buildHost =
        cluster != null
            ? cluster.imageHost(runtimes.all().get(0), pushes, localGvisor ? local : null)
            : SandboxRunners.host(local);
    BaseFacts bases = new BaseFacts(runner, buildHost, data.resolve("runtimes"));
    Sizing serverSizing = Sizing.of(config);
    images = new BuildImage(wheelLayers, runner, pipelines, buildHost);
    warm =
        WarmSandboxes.of(
            config.kubernetes() ? 0 : config.warmPool(),
            config.kubernetes() ? 0 : config.zygotes(),
            local,
            bases,
            images,
            runtimes.all().get(0),
            serverSizing,
            meters);
    closeables.push(warm);
    UdfRegistry[] registryRef = new UdfRegistry[1];
    // A refused connection shows in the UDF's log (kiln logs) the moment it is refused.
    EgressSandboxes egress =
        EgressSandboxes.of(
            config,
            meters,
            d ->
                registryRef[0]
                    .get(new Tenant(d.client().tenant()), new ContentKey(d.client().udf()))
                    .ifPresent(r -> r.note("kiln egress: refused: " + d.reason())));
    closeables.push(egress);
    ModuleSteps steps =
        new ModuleSteps(
            runtimes,
            bases,
            new ResolvePackages(packages),
            new FetchInputs(cache, data.resolve("tmp")),
            images,
            sandboxes,
            new StartRunners(config.batchTimeout()),
            warm,
            pushes,
            cluster,
            egress);
    Pipeline pipeline = new Pipeline(steps, pipelines, meters, r -> registryRef[0].evict(r));
    Scaler[] scalerRef = new Scaler[1];
    registry =
        new UdfRegistry(
            r -> {
              scalerRef[0].attach(r);
              pipeline.start(r);
            });
    steps.warmUp(pipelines);
    // Calls come before refills: a refill waits for the Flight endpoint to pause, at most
    // REFILL_DEFER (the endpoint starts below; until then nothing is being served).
    warm.start(
        pipeline::provisioning,
        () -> {
          FlightEndpoint f = flight;
          return f != null && f.servedWithin(SERVING_QUIET);
        },
        REFILL_DEFER);
    images.yieldTo(pipeline::provisioning);
    registryRef[0] = registry;
    closeables.push(registry);
    Gauge.builder("kiln.udf.resources", registry, UdfRegistry::size)
        .description("UDF resources known to this server")
        .register(meters);
    Gauge.builder("kiln.sandboxes.running", udfProvisioner, p -> p.sandboxes().size())
        .description("gVisor sandboxes running (pods with --kubernetes)")
        .register(meters);
    for (String state : List.of("starting", "busy", "idle", "failed")) {
      Gauge.builder(
              "kiln.udf.resources.state",
              registry,
              r -> r.all().stream().filter(x -> UdfAdmin.state(x).equals(state)).count())
          .description("UDF resources by state (starting, busy, idle, failed)")
          .tag("state", state)
          .register(meters);
    }

    Definitions definitions =
        Definitions.open(
            data.resolve("definitions"),
            cluster != null ? cluster.definitions() : SharedDefinitions.NONE);
    Gauge.builder("kiln.udf.definitions", definitions, Definitions::size)
        .description("UDF definitions kept in the data directory (what Kiln ever answered for)")
        .register(meters);
    UdfRequests requests =
        new UdfRequests(
            registry, definitions, pipeline, tokens, config.applyWait(), InstantSource.system());
    if (config.zygotes() > 0) {
      // The package sets this data directory knows (from before a restart, or from kiln prewarm)
      // get their zygotes now, in the background, not at their next UDF's first start.
      pipelines.execute(
          () -> {
            try {
              pipeline.offerZygotes(requests.recentWithPackages(64), config.zygotes());
            } catch (InterruptedException e) {
              Thread.currentThread().interrupt();
            } catch (RuntimeException e) {
              log.warn("keeping zygotes ready for known package sets failed: {}", e.toString());
            }
          });
    }
    Workers workers =
        cluster != null ? cluster.workers() : FileWorkers.open(data.resolve(FileWorkers.FILE));
    WorkerSizes sizes =
        config.kubernetes()
            ? WorkerSizes.of(config.workerSizes()).forPods()
            : WorkerSizes.of(config.workerSizes());
    // With --kubernetes, other replicas' sandboxes of a UDF count for its worker's bounds.
    ToIntBiFunction<Tenant, ContentKey> elsewhere =
        cluster != null ? cluster::podsElsewhere : (t, k) -> 0;
    Scaler scaler =
        new Scaler(
            pipeline,
            workers,
            sizes,
            config.autoSuspend(),
            pipelines,
            config.scaleDownAfter(),
            elsewhere,
            InstantSource.system());
    scalerRef[0] = scaler;
    UdfEnv udfEnv = new UdfEnv(config.udfEnv(), InstantSource.system());
    EgressPolicies egressPolicies =
        new EgressPolicies(config.egressPolicy(), InstantSource.system());

    flight =
        FlightEndpoint.start(
            new FlightEndpoint.Config(config.bindHost(), config.flightPort(), config.readyWait()),
            tokens,
            new KnownUdfs(
                registry,
                definitions,
                requests,
                workers,
                sizes,
                config.autoSuspend(),
                udfEnv,
                InstantSource.system(),
                meters),
            meters);
    closeables.push(flight);
    endpoint = "http://" + config.advertiseHost() + ":" + flight.port();

    UdfProvisioningService service =
        new UdfProvisioningService(requests, serverSizing, egressPolicies, endpoint, meters);
    WorkerService workerService =
        new WorkerService(
            requests,
            workers,
            sizes,
            serverSizing,
            config.autoSuspend(),
            registry,
            (tenant, imp) ->
                cache.identities().tag(tenant.name(), imp.location(), imp.url(), imp.headers()),
            udfEnv,
            egressPolicies,
            pipelines,
            endpoint,
            InstantSource.system(),
            meters);
    // What another replica suspends or drops stops this replica's sandboxes of it too.
    workers.listen(workerService::changedElsewhere);
    IdleSuspender idle =
        new IdleSuspender(
            workers,
            registry,
            sizes,
            config.autoSuspend(),
            elsewhere,
            InstantSource.system(),
            meters);
    // Room for a UDF's sandbox comes from the sandboxes started ahead of need, then idle UDFs.
    budget.reclaimer(() -> warm.discardOne().or(idle::reclaimOne));
    ScheduledExecutorService sweeper =
        Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kiln-idle-suspend").factory());
    sweeper.scheduleWithFixedDelay(
        () -> {
          try {
            idle.sweep();
            scaler.sweep(registry.all());
          } catch (RuntimeException e) {
            log.warn("idle suspension failed: {}", e.toString());
          }
        },
        1,
        1,
        TimeUnit.SECONDS);
    disk =
        new DiskCollector(
            registry,
            definitions,
            runtimes,
            wheelLayers,
            provisioner,
            pushes == null ? null : pushes.push(),
            data,
            config.gcAfter(),
            config.diskMax(),
            InstantSource.system());
    sweeper.scheduleWithFixedDelay(
        () -> {
          try {
            disk.collect(false);
          } catch (IOException | RuntimeException e) {
            log.warn("collecting unused files failed: {}", e.toString());
          }
        },
        DISK_SWEEP.toSeconds(),
        DISK_SWEEP.toSeconds(),
        TimeUnit.SECONDS);
    closeables.push(
        () -> {
          // Let a sweep that is stopping sandboxes finish, so no mount is left behind.
          sweeper.shutdown();
          sweeper.awaitTermination(30, TimeUnit.SECONDS);
        });
    grpc =
        NettyServerBuilder.forAddress(new InetSocketAddress(config.bindHost(), config.grpcPort()))
            .addService(ServerInterceptors.intercept(service, new CallMetadata()))
            .addService(ServerInterceptors.intercept(workerService, new CallMetadata()))
            .permitKeepAliveTime(10, TimeUnit.SECONDS)
            .permitKeepAliveWithoutCalls(true)
            // ApplyUdfResource never blocks (a cold answer waits on a future callback), so it runs
            // on the event loop: no thread hop on the hot path.
            .directExecutor()
            .build()
            .start();
    closeables.push(() -> shutdown(grpc));

    admin =
        new AdminServer(
            config.bindHost(),
            config.adminPort(),
            meters,
            () -> !closed.get(),
            new UdfAdmin(registry, workers, InstantSource.system(), warm::ready),
            cache,
            data,
            disk);
    closeables.push(admin);

    log.info(
        "Kiln ready in {} ms: grpc={}:{} flight={} admin={}:{} data={} base-images={}",
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0),
        config.bindHost(),
        grpc.getPort(),
        endpoint,
        config.bindHost(),
        admin.port(),
        data,
        runtimes.all().stream()
            .map(r -> r.name() + "=" + r.base().reference() + " (" + r.digest() + ")")
            .toList());
  }

  private void lockDataDir(Path data) throws IOException, KilnException {
    Path lockFile = data.resolve("kiln.lock");
    FileChannel channel =
        FileChannel.open(
            lockFile, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.READ);
    FileLock lock = channel.tryLock();
    if (lock == null) {
      String holder = Files.readString(lockFile, StandardCharsets.UTF_8).trim();
      channel.close();
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION,
          "another Kiln server (pid "
              + (holder.isEmpty() ? "unknown" : holder)
              + ") uses data directory "
              + data
              + "; stop it or pass a different --data-dir");
    }
    channel.truncate(0);
    channel.write(
        java.nio.ByteBuffer.wrap(
            (ProcessHandle.current().pid() + "\n").getBytes(StandardCharsets.UTF_8)));
    closeables.push(
        () -> {
          lock.release();
          channel.close();
        });
  }

  private static void shutdown(Server server) throws InterruptedException {
    server.shutdown();
    if (!server.awaitTermination(5, TimeUnit.SECONDS)) {
      server.shutdownNow();
    }
  }

  private static void shutdown(ExecutorService executor) throws InterruptedException {
    executor.shutdownNow();
    executor.awaitTermination(10, TimeUnit.SECONDS);
  }

  public int grpcPort() {
    return grpc.getPort();
  }

  public int flightPort() {
    return flight.port();
  }

  public int adminPort() {
    return admin.port();
  }

  /** The Flight endpoint returned to Databend. */
  public String endpoint() {
    return endpoint;
  }

  public String baseImageDigest() {
    return baseImageDigest;
  }

  public KilnConfig config() {
    return config;
  }

  public PrometheusMeterRegistry meters() {
    return meters;
  }

  /** How long each step took for a tenant's resource, once it is ready. */
  public Optional<ProvisioningTimings> timings(String tenant, String keyHex) {
    return resource(tenant, keyHex).flatMap(UdfResource::provisioned).map(Provisioned::timings);
  }

  private Optional<UdfResource> resource(String tenant, String keyHex) {
    return registry.all().stream()
        .filter(r -> r.tenant.name().equals(tenant) && r.key.hex().equals(keyHex))
        .findFirst();
  }

  /**
   * Replaces the oldest ready sandbox of the warm pool with a fresh one, in the background: a
   * refill with no UDF taking anything (for measuring what refills cost the calls being served).
   * False when the pool is off or holds none now.
   */
  public boolean recycleWarmSandbox() {
    return warm.recycleWarm();
  }

  /**
   * Where a tenant's UDF resource's provisioning is, as it changes ({@link UdfProgress#watch});
   * empty when this server has no such resource.
   */
  Optional<UdfProgress.Watch> watchProgress(String tenant, String keyHex, Duration timeout) {
    return resource(tenant, keyHex).map(r -> UdfProgress.watch(r, timeout));
  }

  /**
   * Waits until the byte code of every package used so far is compiled (it is compiled in the
   * background after a UDF's first start); false when {@code timeout} passed first.
   */
  public boolean awaitByteCode(Duration timeout) throws InterruptedException {
    return images.awaitByteCode(timeout);
  }

  DiskCollector diskForTests() {
    return disk;
  }

  UdfRegistry registryForTests() {
    return registry;
  }

  /** Blocks until the gRPC server terminates (after {@link #close()}). */
  public void awaitTermination() throws InterruptedException {
    grpc.awaitTermination();
  }

  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    long t0 = System.nanoTime();
    while (!closeables.isEmpty()) {
      AutoCloseable c = closeables.pop();
      try {
        c.close();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } catch (Exception e) {
        log.warn("error while stopping {}: {}", c, e.toString());
      }
    }
    log.info("Kiln stopped in {} ms", TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
  }
}
