package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.controlplane.proto.udf.ApplyUdfResourceRequest;
import dev.kiln.controlplane.proto.udf.ApplyUdfResourceResponse;
import dev.kiln.controlplane.proto.udf.UdfImport;
import dev.kiln.controlplane.proto.udf.UdfServiceGrpc;
import dev.kiln.definition.Tenant;
import dev.kiln.image.BuildImage;
import dev.kiln.image.Runtimes;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.Lock;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.Tokens;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.MetadataUtils;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The fast tier: the ApplyUdfResource front door and the pipeline's error handling over in-process
 * gRPC, with fakes of the pipeline's steps (no root, no runsc, no base image). What the real steps
 * do is covered by the modules' own tests and the end-to-end tests.
 */
class UdfProvisioningServiceTest {
  private static final String CODE = "def f(x):\n    return x\n";
  static final Sizing SIZING = new Sizing(Sizing.DEFAULT, 1.0, 512L << 20, 1);
  static final Runtimes.Runtime RUNTIME =
      new Runtimes.Runtime("default", null, "sha256:" + "0".repeat(64), null);

  private final FakeSteps steps = new FakeSteps();
  private final MutableClock clock = new MutableClock();
  private final Tokens tokens = new Tokens(new byte[32]);
  private final List<AutoCloseable> closeables = new ArrayList<>();
  @TempDir Path dir;
  private UdfRegistry registry;
  private KnownUdfs directory;
  private UdfServiceGrpc.UdfServiceBlockingStub api;

  @AfterEach
  void stop() throws Exception {
    steps.release.countDown();
    for (AutoCloseable c : closeables.reversed()) {
      c.close();
    }
  }

  /** A front door whose pipelines run on {@code executor} and that waits {@code applyWait}. */
  private void start(ExecutorService executor, Duration applyWait) throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    UdfRegistry[] ref = new UdfRegistry[1];
    Pipeline pipeline = new Pipeline(steps, executor, meters, r -> ref[0].evict(r));
    registry = new UdfRegistry(pipeline::start);
    ref[0] = registry;
    Definitions definitions = Definitions.open(dir.resolve("definitions"));
    UdfRequests requests =
        new UdfRequests(registry, definitions, pipeline, tokens, applyWait, clock);
    directory = knownUdfs(registry, definitions, requests);
    UdfProvisioningService service =
        new UdfProvisioningService(
            requests, SIZING, new EgressPolicies(null, clock), "http://kiln:8815", meters);
    String name = InProcessServerBuilder.generateName();
    Server server =
        InProcessServerBuilder.forName(name)
            .directExecutor()
            .addService(ServerInterceptors.intercept(service, new CallMetadata()))
            .build()
            .start();
    ManagedChannel channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    closeables.add(executor::shutdownNow);
    closeables.add(() -> server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS));
    closeables.add(() -> channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS));
    closeables.add(registry);
    api = UdfServiceGrpc.newBlockingStub(channel);
  }

  /** Pipelines run to their end inside the call, so a test sees their outcome at once. */
  private void startInline() throws Exception {
    ExecutorService direct =
        new java.util.concurrent.AbstractExecutorService() {
          @Override
          public void execute(Runnable command) {
            command.run();
          }

          @Override
          public void shutdown() {}

          @Override
          public List<Runnable> shutdownNow() {
            return List.of();
          }

          @Override
          public boolean isShutdown() {
            return false;
          }

          @Override
          public boolean isTerminated() {
            return false;
          }

          @Override
          public boolean awaitTermination(long timeout, TimeUnit unit) {
            return true;
          }
        };
    start(direct, Duration.ofSeconds(3));
  }

  private ApplyUdfResourceResponse apply(String tenant, String spec, UdfImport... imports) {
    UdfServiceGrpc.UdfServiceBlockingStub stub = api;
    if (tenant != null) {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of(Tenant.HEADER, Metadata.ASCII_STRING_MARSHALLER), tenant);
      stub = stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    return stub.withDeadlineAfter(5, TimeUnit.SECONDS)
        .applyUdfResource(
            ApplyUdfResourceRequest.newBuilder()
                .setSpec(spec)
                .addAllImports(Arrays.asList(imports))
                .build());
  }

  /** Asserts that a gRPC call fails with the status, the code's label and these words. */
  static void assertStatus(Runnable call, Status.Code code, ErrorCode kiln, String... contains) {
    assertThatThrownBy(call::run)
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode()).isEqualTo(code);
              assertThat(e.getStatus().getDescription())
                  .contains(contains)
                  .endsWith("[" + kiln.label() + "]");
            });
  }

  @Test
  void badDefinitionsAreRefusedBeforeAnyStepRuns() throws Exception {
    startInline();
    assertStatus(
        () -> apply("acme", "{not json"),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_SPEC,
        "invalid UDF spec: the spec is not valid JSON");
    assertStatus(
        () -> apply("acme", spec("missing", List.of("INT"), "INT", CODE)),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.HANDLER_NOT_DEFINED,
        "does not define 'missing'",
        "(it defines: f)");
    assertStatus(
        () ->
            apply("acme", spec("f", List.of("INT"), "INT", List.of(), List.of("numpy>=>1"), CODE)),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_REQUIREMENT,
        "invalid UDF spec: spec field 'packages[0]': invalid requirement 'numpy>=>1'");
    String pep723 = "\n\n# /// script\n# dependencies = [\"six>>1\"]\n# ///\n" + CODE;
    assertStatus(
        () -> apply("acme", spec("f", List.of("INT"), "INT", pep723)),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_REQUIREMENT,
        "the code's PEP 723 block (# /// script): PEP 723 block at line 3",
        "invalid requirement 'six>>1'");
    assertStatus(
        () -> apply("acme", spec("f", List.of("INT"), "INT", List.of("@s/a.py"), List.of(), CODE)),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.IMPORT_MISMATCH,
        "the spec imports @s/a.py but the request carries no UdfImport");
    assertStatus(
        () -> apply("bad\ttenant", spec("f", List.of("INT"), "INT", CODE)),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_CALL,
        "the x-databend-tenant header is invalid");
    assertThat(steps.resolves).hasValue(0);
    assertThat(registry.size()).isZero();
  }

  @Test
  void aUdfsOwnFailureIsAnsweredAtOnceForAMinuteThenTriedAgain() throws Exception {
    steps.resolveFailure =
        new KilnException(
            ErrorCode.PACKAGE_NOT_FOUND,
            "the UDF's packages cannot be installed: no package named 'nope'");
    startInline();
    String s = spec("f", List.of("INT"), "INT", List.of(), List.of("nope"), CODE);
    assertStatus(
        () -> apply("acme", s),
        Status.Code.FAILED_PRECONDITION,
        ErrorCode.PACKAGE_NOT_FOUND,
        "no package named 'nope'");
    clock.advance(Duration.ofSeconds(59));
    assertStatus(
        () -> apply("acme", s),
        Status.Code.FAILED_PRECONDITION,
        ErrorCode.PACKAGE_NOT_FOUND,
        "no package named 'nope'");
    assertThat(steps.resolves).as("remembered, not resolved again").hasValue(1);
    clock.advance(Duration.ofSeconds(2));
    assertStatus(
        () -> apply("acme", s),
        Status.Code.FAILED_PRECONDITION,
        ErrorCode.PACKAGE_NOT_FOUND,
        "no package named 'nope'");
    assertThat(steps.resolves).as("after a minute it is tried again").hasValue(2);
  }

  @Test
  void aPassingFailureIsTriedAgainOnTheNextRequest() throws Exception {
    steps.placeFailure =
        new KilnException(
            ErrorCode.SANDBOX_UNAVAILABLE, "starting the UDF's gVisor sandbox failed: busy");
    startInline();
    String s = spec("f", List.of("INT"), "INT", CODE);
    for (int i = 0; i < 2; i++) {
      assertStatus(
          () -> apply("acme", s),
          Status.Code.UNAVAILABLE,
          ErrorCode.SANDBOX_UNAVAILABLE,
          "starting the UDF's gVisor sandbox failed: busy");
    }
    assertThat(steps.places).hasValue(2);
  }

  @Test
  void runnersThatDoNotStartLeaveNoSandboxBehind() throws Exception {
    steps.startFailure =
        new KilnException(
            ErrorCode.UDF_LOAD_FAILED, "the UDF code failed to load: SyntaxError (line 2)");
    startInline();
    assertStatus(
        () -> apply("acme", spec("f", List.of("INT"), "INT", CODE)),
        Status.Code.FAILED_PRECONDITION,
        ErrorCode.UDF_LOAD_FAILED,
        "SyntaxError");
    assertThat(steps.sandboxes).hasSize(1);
    assertThat(steps.sandboxes.get(0).closed).as("the placed sandbox is stopped").isTrue();
  }

  @Test
  void stepsRunInTheDesignOrderAndOncePerKeyAndTenant() throws Exception {
    steps.blockRunners = true;
    start(Executors.newVirtualThreadPerTaskExecutor(), Duration.ZERO);
    String s = spec("f", List.of("INT"), "INT", CODE);
    ApplyUdfResourceResponse first = apply("acme", s);
    ApplyUdfResourceResponse again = apply("acme", s);
    assertThat(again).isEqualTo(first);
    assertThat(first.getEndpoint()).isEqualTo("http://kiln:8815");
    assertThat(steps.startedRunners.await(10, TimeUnit.SECONDS)).isTrue();
    assertThat(steps.order)
        .containsExactly("resolve", "fetch", "build", "place", "start")
        .as("one pipeline for the key and tenant");
    ApplyUdfResourceResponse other = apply("globex", s);
    assertThat(other.getHeadersMap()).isNotEqualTo(first.getHeadersMap());
  }

  @Test
  void theProgressOfAUdfFollowsItsStepsAndEndsWithItsFailure() throws Exception {
    steps.blockRunners = true;
    steps.startFailure =
        new KilnException(ErrorCode.UDF_LOAD_FAILED, "the UDF's code raised NameError");
    start(Executors.newVirtualThreadPerTaskExecutor(), Duration.ZERO);
    apply("acme", spec("f", List.of("INT"), "INT", CODE));
    UdfResource r = registry.all().iterator().next();
    UdfProgress.Watch watch = UdfProgress.watch(r, Duration.ofSeconds(30));
    assertThat(steps.startedRunners.await(30, TimeUnit.SECONDS)).isTrue();
    // The pipeline waits in its last step: the watch says so, and sees it fail once released.
    List<String> seen = new ArrayList<>();
    var first = watch.next();
    seen.add(first.get("state").asText() + " " + first.path("step").asText());
    assertThat(first.get("step_number").asInt()).isEqualTo(5);
    assertThat(first.get("doing").asText()).isEqualTo("starting the runners");
    steps.release.countDown();
    for (var n = watch.next(); n != null; n = watch.next()) {
      seen.add(n.get("state").asText() + " " + n.path("step").asText());
      if (UdfProgress.isFinal(n)) {
        assertThat(n.get("code").asText()).isEqualTo("UDF_LOAD_FAILED");
        assertThat(n.get("error").asText()).contains("NameError");
      }
    }
    assertThat(seen).containsExactly("starting runners", "failed ");
  }

  @Test
  void aWatchEndsAtItsTimeoutSayingWhereTheUdfWaits() throws Exception {
    steps.blockRunners = true;
    start(Executors.newVirtualThreadPerTaskExecutor(), Duration.ZERO);
    apply("acme", spec("f", List.of("INT"), "INT", CODE));
    assertThat(steps.startedRunners.await(30, TimeUnit.SECONDS)).isTrue();
    UdfProgress.Watch watch = UdfProgress.watch(registry.all().iterator().next(), Duration.ZERO);
    var last = watch.next();
    assertThat(last.get("state").asText()).isEqualTo("starting");
    assertThat(last.get("step").asText()).isEqualTo("runners");
    assertThat(watch.next()).as("the watch has ended").isNull();
  }

  @Test
  void aCallWithoutATenantBelongsToTheDefaultTenant() throws Exception {
    steps.blockRunners = true;
    start(Executors.newVirtualThreadPerTaskExecutor(), Duration.ZERO);
    ApplyUdfResourceResponse r = apply(null, spec("f", List.of("INT"), "INT", CODE));
    Tokens.Grant grant = tokens.verify(r.getHeadersOrThrow(Tokens.HEADER)).orElseThrow();
    assertThat(grant.tenant()).isEqualTo(Tenant.DEFAULT);
    assertThat(registry.get(Tenant.DEFAULT, grant.key())).isPresent();
  }

  // ---------------------------------------------------------------- what Kiln answered is kept

  /** The Flight endpoint's view of a server started afresh on this test's data directory. */
  private KnownUdfs restartedDirectory(FakeSteps restartedSteps) throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    ExecutorService executor = Executors.newVirtualThreadPerTaskExecutor();
    UdfRegistry[] ref = new UdfRegistry[1];
    Pipeline pipeline = new Pipeline(restartedSteps, executor, meters, r -> ref[0].evict(r));
    UdfRegistry restarted = new UdfRegistry(pipeline::start);
    ref[0] = restarted;
    closeables.add(executor::shutdownNow);
    closeables.add(restarted);
    Definitions definitions = Definitions.open(dir.resolve("definitions"));
    UdfRequests requests =
        new UdfRequests(restarted, definitions, pipeline, tokens, Duration.ZERO, clock);
    return knownUdfs(restarted, definitions, requests);
  }

  /** The Flight endpoint's directory over these, with no workers and no environment file. */
  private KnownUdfs knownUdfs(UdfRegistry registry, Definitions definitions, UdfRequests requests)
      throws Exception {
    return new KnownUdfs(
        registry,
        definitions,
        requests,
        FileWorkers.open(dir.resolve("workers.json")),
        WorkerSizes.of(List.of()),
        Duration.ZERO,
        new UdfEnv(null, clock),
        clock,
        new SimpleMeterRegistry());
  }

  @Test
  void aTokenOutlivesARestartItsUdfStartsAgainOnItsFirstCall() throws Exception {
    steps.blockRunners = true;
    start(Executors.newVirtualThreadPerTaskExecutor(), Duration.ZERO);
    String s = spec("f", List.of("INT"), "INT", CODE);
    Tokens.Grant grant =
        tokens.verify(apply("acme", s).getHeadersOrThrow(Tokens.HEADER)).orElseThrow();

    FakeSteps after = new FakeSteps();
    after.blockRunners = true;
    closeables.add(after.release::countDown);
    KnownUdfs restarted = restartedDirectory(after);
    assertThat(after.order).as("nothing starts before a call asks").isEmpty();

    var handle = restarted.find(new Tenant("acme"), grant.key()).orElseThrow();
    assertThat(handle.signature().handler()).isEqualTo("f");
    assertThat(after.startedRunners.await(10, TimeUnit.SECONDS)).isTrue();
    assertThat(after.order).containsExactly("resolve", "fetch", "build", "place", "start");
    assertThat(restarted.find(new Tenant("acme"), grant.key()).orElseThrow())
        .as("later calls join the same start")
        .isSameAs(handle);
    assertThat(after.resolves).hasValue(1);
    assertThat(restarted.find(new Tenant("globex"), grant.key())).as("kept per tenant").isEmpty();
  }

  @Test
  void aKeyThisServerNeverAnsweredForIsNotFound() throws Exception {
    KnownUdfs directory = restartedDirectory(new FakeSteps());
    assertThat(directory.find(Tenant.DEFAULT, new dev.kiln.definition.ContentKey("ab".repeat(32))))
        .isEmpty();
  }

  @Test
  void aUdfThatCannotServeStartsAgainOnTheNextCall() throws Exception {
    steps.placeFailure =
        new KilnException(ErrorCode.SANDBOX_UNAVAILABLE, "the sandbox did not start");
    startInline();
    String s = spec("f", List.of("INT"), "INT", CODE);
    assertThatThrownBy(() -> apply("acme", s)).hasMessageContaining("the sandbox did not start");
    var key = registry.all().iterator().next().key;
    assertThat(registry.get(new Tenant("acme"), key).orElseThrow().isStale()).isTrue();

    steps.placeFailure = null;
    var handle = directory.find(new Tenant("acme"), key).orElseThrow();
    assertThat(steps.places).as("a second pipeline, from the kept definition").hasValue(2);
    assertThat(handle).isSameAs(registry.get(new Tenant("acme"), key).orElseThrow());
  }

  /** The steps, each doing what the test says, recording the order they ran in. */
  static final class FakeSteps implements PipelineSteps {
    final AtomicInteger resolves = new AtomicInteger();
    final AtomicInteger places = new AtomicInteger();
    final List<String> order = new java.util.concurrent.CopyOnWriteArrayList<>();
    final List<FakeSandbox> sandboxes = new java.util.concurrent.CopyOnWriteArrayList<>();
    final CountDownLatch release = new CountDownLatch(1);
    final CountDownLatch startedRunners = new CountDownLatch(1);
    volatile KilnException resolveFailure;
    volatile KilnException placeFailure;
    volatile KilnException startFailure;
    volatile boolean blockRunners;

    @Override
    public Runtimes.Runtime runtime(String runtimeVersion) {
      return RUNTIME;
    }

    @Override
    public Lock resolvePackages(UdfResource r) throws KilnException {
      order.add("resolve");
      resolves.incrementAndGet();
      if (resolveFailure != null) {
        throw resolveFailure;
      }
      return Lock.empty();
    }

    @Override
    public Inputs fetchInputs(UdfResource r, Lock lock) {
      order.add("fetch");
      return new Inputs(List.of(), List.of());
    }

    @Override
    public BuildImage.UdfImage buildImage(UdfResource r, Lock lock, Inputs inputs) {
      order.add("build");
      return new BuildImage.UdfImage(r.key, null);
    }

    @Override
    public Sandbox placeSandbox(UdfResource r, BuildImage.UdfImage image) throws KilnException {
      order.add("place");
      places.incrementAndGet();
      if (placeFailure != null) {
        throw placeFailure;
      }
      FakeSandbox s = new FakeSandbox();
      sandboxes.add(s);
      return s;
    }

    @Override
    public RunnerPool startRunners(UdfResource r, Sandbox sandbox)
        throws KilnException, InterruptedException {
      order.add("start");
      startedRunners.countDown();
      if (blockRunners) {
        release.await();
      }
      if (startFailure != null) {
        throw startFailure;
      }
      throw new KilnException(ErrorCode.SHUTTING_DOWN, "the test is over");
    }
  }

  /** A sandbox that only knows whether it was closed. */
  static final class FakeSandbox implements Sandbox {
    volatile boolean closed;
    final CompletableFuture<Void> stopped = new CompletableFuture<>();

    @Override
    public String id() {
      return "fake";
    }

    @Override
    public SandboxSpec spec() {
      throw new UnsupportedOperationException();
    }

    @Override
    public SandboxProcess init() {
      throw new UnsupportedOperationException();
    }

    @Override
    public SandboxProcess exec(List<String> argv, List<String> env) {
      throw new UnsupportedOperationException();
    }

    @Override
    public boolean isRunning() {
      return !closed;
    }

    @Override
    public CompletableFuture<Void> stopped() {
      return stopped;
    }

    @Override
    public void close() {
      closed = true;
      stopped.complete(null);
    }
  }

  /** A clock the test moves. */
  static final class MutableClock implements InstantSource {
    private volatile Instant now = Instant.parse("2026-12-03T00:00:00Z");

    @Override
    public Instant instant() {
      return now;
    }

    void advance(Duration d) {
      now = now.plus(d);
    }
  }
}
