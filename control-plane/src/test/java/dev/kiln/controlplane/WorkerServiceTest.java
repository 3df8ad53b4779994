package dev.kiln.controlplane;

import static dev.kiln.controlplane.UdfProvisioningServiceTest.assertStatus;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest.WorkerStateAction;
import dev.kiln.controlplane.proto.resource.CreateWorkerRequest;
import dev.kiln.controlplane.proto.resource.CreateWorkerResponse;
import dev.kiln.controlplane.proto.resource.DropWorkerRequest;
import dev.kiln.controlplane.proto.resource.ListWorkersRequest;
import dev.kiln.controlplane.proto.resource.Worker;
import dev.kiln.controlplane.proto.resource.WorkerServiceGrpc;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.QueryScripts;
import dev.kiln.definition.Tenant;
import dev.kiln.worker.Tokens;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.MetadataUtils;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The worker DDL over in-process gRPC, as Databend Query sends it (their CI's worker case), with
 * fakes of the pipeline's steps: no root, no runsc.
 */
class WorkerServiceTest {
  @TempDir Path dir;

  private final UdfProvisioningServiceTest.FakeSteps steps =
      new UdfProvisioningServiceTest.FakeSteps();
  private final UdfProvisioningServiceTest.MutableClock clock =
      new UdfProvisioningServiceTest.MutableClock();
  private final List<AutoCloseable> closeables = new ArrayList<>();
  private WorkerServiceGrpc.WorkerServiceBlockingStub api;
  private KnownUdfs directory;
  private final Map<String, String> importTags = new java.util.concurrent.ConcurrentHashMap<>();

  @BeforeEach
  void start() throws Exception {
    api = serve(FileWorkers.open(dir.resolve("workers.json")));
  }

  @AfterEach
  void stop() throws Exception {
    steps.release.countDown();
    for (AutoCloseable c : closeables.reversed()) {
      c.close();
    }
    closeables.clear();
  }

  private WorkerServiceGrpc.WorkerServiceBlockingStub serve(Workers workers) throws Exception {
    SimpleMeterRegistry meters = new SimpleMeterRegistry();
    UdfRegistry[] ref = new UdfRegistry[1];
    java.util.concurrent.ExecutorService pipelines =
        java.util.concurrent.Executors.newVirtualThreadPerTaskExecutor();
    Pipeline pipeline = new Pipeline(steps, pipelines, meters, r -> ref[0].evict(r));
    UdfRegistry registry = new UdfRegistry(pipeline::start);
    ref[0] = registry;
    Definitions definitions = Definitions.open(dir.resolve("definitions"));
    UdfRequests requests =
        new UdfRequests(
            registry, definitions, pipeline, new Tokens(new byte[32]), Duration.ZERO, clock);
    UdfEnv env = new UdfEnv(dir.resolve("udf_env.toml"), clock);
    directory =
        new KnownUdfs(
            registry,
            definitions,
            requests,
            workers,
            WorkerSizes.of(List.of()),
            Duration.ZERO,
            env,
            clock,
            new SimpleMeterRegistry());
    WorkerService service =
        new WorkerService(
            requests,
            workers,
            WorkerSizes.of(List.of()),
            UdfProvisioningServiceTest.SIZING,
            Duration.ZERO,
            registry,
            (tenant, imp) -> importTags.getOrDefault(imp.location(), "unknown"),
            env,
            new EgressPolicies(dir.resolve("egress.toml"), clock),
            pipelines,
            "http://kiln:8815",
            clock,
            meters);
    String name = InProcessServerBuilder.generateName();
    Server server =
        InProcessServerBuilder.forName(name)
            .directExecutor()
            .addService(ServerInterceptors.intercept(service, new CallMetadata()))
            .build()
            .start();
    ManagedChannel channel = InProcessChannelBuilder.forName(name).directExecutor().build();
    closeables.add(() -> server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS));
    closeables.add(() -> channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS));
    closeables.add(registry);
    closeables.add(pipelines::shutdownNow);
    return WorkerServiceGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS);
  }

  private static WorkerServiceGrpc.WorkerServiceBlockingStub as(
      WorkerServiceGrpc.WorkerServiceBlockingStub stub, String tenant) {
    Metadata headers = new Metadata();
    headers.put(Metadata.Key.of(Tenant.HEADER, Metadata.ASCII_STRING_MARSHALLER), tenant);
    return stub.withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers));
  }

  private Worker create(String tenant, String name, boolean ifNotExists, Map<String, String> o) {
    return as(api, tenant)
        .createWorker(
            CreateWorkerRequest.newBuilder()
                .setTenantId(tenant)
                .setName(name)
                .setIfNotExists(ifNotExists)
                .putAllOptions(o)
                .build())
        .getWorker();
  }

  private Worker alter(String tenant, AlterWorkerRequest.Builder request) {
    return as(api, tenant).alterWorker(request.setTenantId(tenant).build()).getWorker();
  }

  private List<Worker> list(String tenant) {
    return as(api, tenant)
        .listWorkers(ListWorkersRequest.newBuilder().setTenantId(tenant).build())
        .getWorkersList();
  }

  @Test
  void theirWorkerCaseRunsAsQuerySendsIt() {
    Worker created =
        create(
            "acme",
            "read_env",
            true,
            Map.of(
                "size", "small",
                "auto_suspend", "300",
                "auto_resume", "true",
                "max_cluster_count", "3",
                "min_cluster_count", "1"));
    assertThat(created.getName()).isEqualTo("read_env");
    assertThat(created.getOptionsMap())
        .containsEntry("size", "small")
        .containsEntry("state", "running");
    assertThat(created.getCreatedAt()).isEqualTo("2026-12-03T00:00:00Z");
    clock.advance(Duration.ofSeconds(5));
    alter(
        "acme",
        AlterWorkerRequest.newBuilder()
            .setName("read_env")
            .putSetOptions("size", "medium")
            .putSetOptions("auto_suspend", "600"));
    alter(
        "acme",
        AlterWorkerRequest.newBuilder().setName("read_env").putSetTags("purpose", "sandbox"));
    Worker suspended =
        alter(
            "acme",
            AlterWorkerRequest.newBuilder()
                .setName("read_env")
                .setStateAction(WorkerStateAction.Suspend));
    assertThat(suspended.getOptionsMap()).containsEntry("state", "suspended");
    alter(
        "acme",
        AlterWorkerRequest.newBuilder()
            .setName("read_env")
            .setStateAction(WorkerStateAction.Resume));
    List<Worker> shown = list("acme");
    assertThat(shown).hasSize(1);
    Worker w = shown.get(0);
    assertThat(w.getTagsMap()).containsEntry("purpose", "sandbox");
    assertThat(w.getOptionsMap())
        .containsEntry("size", "medium")
        .containsEntry("auto_suspend", "600")
        .containsEntry("state", "running");
    assertThat(w.getCreatedAt()).isEqualTo("2026-12-03T00:00:00Z");
    assertThat(w.getUpdatedAt()).isEqualTo("2026-12-03T00:00:05Z");
    as(api, "acme")
        .dropWorker(
            DropWorkerRequest.newBuilder()
                .setTenantId("acme")
                .setName("read_env")
                .setIfExists(true)
                .build());
    assertThat(list("acme")).isEmpty();
  }

  @Test
  void badOptionsAreRefusedWithWhatIsSupported() {
    assertStatus(
        () -> create("acme", "w", true, Map.of("sise", "small")),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_WORKER_OPTION,
        "'sise' is not a worker option",
        "Supported: size (xsmall, small, medium, large, xlarge)");
    assertStatus(
        () -> create("acme", "w", true, Map.of("size", "huge", "auto_resume", "maybe")),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_WORKER_OPTION,
        "size 'huge' is not one of",
        "auto_resume 'maybe' is not true or false");
    assertStatus(
        () -> create("acme", "w", true, Map.of("min_cluster_count", "3", "max_cluster_count", "2")),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_WORKER_OPTION,
        "min_cluster_count 3 is more than max_cluster_count 2");
    assertStatus(
        () -> create("acme", "w", true, Map.of("state", "running")),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_WORKER_OPTION,
        "cannot be set");
    assertThat(list("acme")).as("nothing was created").isEmpty();
    create("acme", "w", true, Map.of("size", "small"));
    assertStatus(
        () ->
            alter(
                "acme",
                AlterWorkerRequest.newBuilder().setName("w").putSetOptions("auto_suspend", "-1")),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_WORKER_OPTION,
        "auto_suspend '-1' is not a number of seconds");
    assertThat(list("acme").get(0).getOptionsMap())
        .as("a refused change changes nothing")
        .doesNotContainKey("auto_suspend");
  }

  @Test
  void namesAreUniquePerTenantAndMissingOnesAreNotFound() {
    create("acme", "w", false, Map.of());
    assertStatus(
        () -> create("acme", "w", false, Map.of()),
        Status.Code.ALREADY_EXISTS,
        ErrorCode.WORKER_EXISTS,
        "worker w exists already");
    assertThat(create("acme", "w", true, Map.of()).getName()).isEqualTo("w");
    create("globex", "w", false, Map.of());
    assertThat(list("acme")).hasSize(1);
    assertThat(list("globex")).hasSize(1);
    assertStatus(
        () -> alter("acme", AlterWorkerRequest.newBuilder().setName("nope")),
        Status.Code.NOT_FOUND,
        ErrorCode.WORKER_NOT_FOUND,
        "there is no worker nope");
    assertStatus(
        () ->
            as(api, "acme")
                .dropWorker(
                    DropWorkerRequest.newBuilder().setTenantId("acme").setName("nope").build()),
        Status.Code.NOT_FOUND,
        ErrorCode.WORKER_NOT_FOUND,
        "nope");
  }

  @Test
  void aTenantCanOnlyManageItsOwnWorkers() {
    assertStatus(
        () ->
            as(api, "globex")
                .listWorkers(ListWorkersRequest.newBuilder().setTenantId("acme").build()),
        Status.Code.PERMISSION_DENIED,
        ErrorCode.TENANT_MISMATCH,
        "the request is for tenant 'acme' but the call comes from tenant 'globex'");
  }

  @Test
  void workersSurviveARestart() throws Exception {
    create("acme", "kept", true, Map.of("size", "large"));
    alter("acme", AlterWorkerRequest.newBuilder().setName("kept").putSetTags("team", "data"));
    stop();
    api = serve(FileWorkers.open(dir.resolve("workers.json")));
    List<Worker> shown = list("acme");
    assertThat(shown).hasSize(1);
    assertThat(shown.get(0).getTagsMap()).containsEntry("team", "data");
    assertThat(shown.get(0).getOptionsMap()).containsEntry("size", "large");
  }

  private CreateWorkerResponse createUdf(String tenant, String name, String script) {
    return as(api, tenant)
        .createWorker(
            CreateWorkerRequest.newBuilder()
                .setTenantId(tenant)
                .setName(name)
                .setIfNotExists(true)
                .setType("udf")
                .setScript(script)
                .build());
  }

  private static String addOne() {
    return QueryScripts.udf("def add_one(x):\n    return x + 1\n", "add_one")
        .inputs("INT32 NULL")
        .result("INT32 NULL")
        .render();
  }

  @Test
  void aUdfScriptIsServedLikeApplyUdfResourceAndRecordedAsAWorker() {
    steps.blockRunners = true;
    CreateWorkerResponse first = createUdf("acme", "add_one", addOne());
    assertThat(first.getEndpoint()).isEqualTo("http://kiln:8815");
    assertThat(first.getHeadersMap()).containsKey(Tokens.HEADER);
    CreateWorkerResponse again = createUdf("acme", "add_one", addOne());
    assertThat(again.getHeadersMap()).isEqualTo(first.getHeadersMap());
    assertThat(steps.resolves).as("one pipeline").hasValue(1);
    List<Worker> shown = list("acme");
    assertThat(shown).extracting(Worker::getName).containsExactly("add_one");
    assertThat(shown.get(0).getOptionsMap()).containsEntry("state", "running");
  }

  @Test
  void aUdfRunsWithItsWorkersSize() {
    steps.blockRunners = true;
    CreateWorkerResponse plain = createUdf("acme", "add_one", addOne());
    create("globex", "add_one", true, Map.of("size", "medium"));
    CreateWorkerResponse medium = createUdf("globex", "add_one", addOne());
    // Another size is another resource (another key in the token), even for the same code.
    assertThat(key(medium)).isNotEqualTo(key(plain));
  }

  private static String key(CreateWorkerResponse r) {
    return r.getHeadersOrThrow(Tokens.HEADER).split("\\.")[1];
  }

  @Test
  void aSuspendedWorkerResumesOnAQueryOnlyWhenItsAutoResumeSaysSo() {
    steps.blockRunners = true;
    create("acme", "add_one", true, Map.of("auto_resume", "false"));
    alter(
        "acme",
        AlterWorkerRequest.newBuilder()
            .setName("add_one")
            .setStateAction(WorkerStateAction.Suspend));
    assertStatus(
        () -> createUdf("acme", "add_one", addOne()),
        Status.Code.FAILED_PRECONDITION,
        ErrorCode.WORKER_SUSPENDED,
        "worker add_one is suspended; run ALTER WORKER add_one RESUME");
    assertThat(steps.resolves).as("nothing started").hasValue(0);
    alter(
        "acme",
        AlterWorkerRequest.newBuilder().setName("add_one").putSetOptions("auto_resume", "true"));
    createUdf("acme", "add_one", addOne());
    assertThat(list("acme").get(0).getOptionsMap()).containsEntry("state", "running");
  }

  @Test
  void aCallForASuspendedWorkersUdfStartsItOnlyWhenItsAutoResumeSaysSo() throws Exception {
    steps.blockRunners = true;
    create("acme", "add_one", true, Map.of("auto_resume", "false"));
    ContentKey key = new ContentKey(key(createUdf("acme", "add_one", addOne())));
    alter(
        "acme",
        AlterWorkerRequest.newBuilder()
            .setName("add_one")
            .setStateAction(WorkerStateAction.Suspend));

    assertThatThrownBy(() -> directory.find(new Tenant("acme"), key))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.WORKER_SUSPENDED))
        .hasMessage(
            "worker add_one is suspended; run ALTER WORKER add_one RESUME (or set"
                + " auto_resume = 'true')");
    assertThat(steps.resolves).as("only the first query's pipeline").hasValue(1);

    alter(
        "acme",
        AlterWorkerRequest.newBuilder().setName("add_one").putSetOptions("auto_resume", "true"));
    assertThat(directory.find(new Tenant("acme"), key)).isPresent();
    KilnTestSupport.eventually(
        "a pipeline started again for the call",
        Duration.ofSeconds(10),
        () -> steps.resolves.get() == 2);
    assertThat(list("acme").get(0).getOptionsMap()).containsEntry("state", "running");
  }

  @Test
  void aDroppedWorkersUdfIsForgotten() throws Exception {
    steps.blockRunners = true;
    ContentKey key = new ContentKey(key(createUdf("acme", "add_one", addOne())));
    assertThat(directory.find(new Tenant("acme"), key)).isPresent();
    as(api, "acme")
        .dropWorker(DropWorkerRequest.newBuilder().setTenantId("acme").setName("add_one").build());
    assertThat(directory.find(new Tenant("acme"), key)).isEmpty();
  }

  @Test
  void aScriptNotInQuerysShapeIsRefusedAndCreatesNothing() {
    assertStatus(
        () -> createUdf("acme", "f", "#!/bin/sh\necho hello\n"),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_SPEC,
        "invalid CreateWorker script",
        "Kiln accepts scripts rendered by Databend Query's sandbox-UDF templates");
    assertStatus(
        () ->
            as(api, "acme")
                .createWorker(
                    CreateWorkerRequest.newBuilder()
                        .setTenantId("acme")
                        .setName("f")
                        .setType("task")
                        .setScript("x")
                        .build()),
        Status.Code.INVALID_ARGUMENT,
        ErrorCode.INVALID_CALL,
        "type 'task' is not supported");
    assertThat(list("acme")).isEmpty();
    assertThat(steps.resolves).hasValue(0);
  }

  @Test
  void anImportIsKeyedByItsContentIdentitySoAReuploadMakesANewResource() {
    steps.blockRunners = true;
    String code = "from helper import one\ndef f(x):\n    return one(x)\n";
    java.util.function.IntFunction<String> script =
        n ->
            QueryScripts.udf(code, "f")
                .inputs("INT32 NULL")
                .result("INT32 NULL")
                // A new presigned URL on every query, as Query sends them.
                .addImport(
                    "@s/helper.py", "http://stage/helper.py?sig=" + n, Map.of("host", "stage"))
                .render();
    importTags.put("@s/helper.py", "etag:\"v1\"");
    CreateWorkerResponse first = createUdf("acme", "f", script.apply(1));
    CreateWorkerResponse same = createUdf("acme", "f", script.apply(2));
    assertThat(key(same)).as("same content, new URL: the same resource").isEqualTo(key(first));
    importTags.put("@s/helper.py", "etag:\"v2\"");
    CreateWorkerResponse reuploaded = createUdf("acme", "f", script.apply(3));
    assertThat(key(reuploaded)).as("new content: a new resource").isNotEqualTo(key(first));
    // Each resource's pipeline runs in the background: the second one's has started by now or soon.
    KilnTestSupport.eventually(
        "the new resource's pipeline resolved",
        Duration.ofSeconds(10),
        () -> steps.resolves.get() == 2);
    assertThat(steps.resolves).hasValue(2);
  }

  @Test
  void aUdfsEnvironmentIsPartOfItsResourceSoAChangedValueTakesEffectOnTheNextQuery()
      throws Exception {
    steps.blockRunners = true;
    java.nio.file.Files.writeString(
        dir.resolve("udf_env.toml"),
        "[udf_env]\n\"acme.add_one\" = { UDF_ENV_TEST = \"sandbox_env_ok\" }\n");
    CreateWorkerResponse first = createUdf("acme", "add_one", addOne());
    CreateWorkerResponse same = createUdf("acme", "add_one", addOne());
    assertThat(key(same)).isEqualTo(key(first));
    java.nio.file.Files.writeString(
        dir.resolve("udf_env.toml"),
        "[udf_env]\n\"acme.add_one\" = { UDF_ENV_TEST = \"changed\" }\n");
    clock.advance(WatchedFile.CHECK_INTERVAL);
    CreateWorkerResponse changed = createUdf("acme", "add_one", addOne());
    assertThat(key(changed)).isNotEqualTo(key(first));
    // Another tenant's UDF of the same name has no environment: the plain key.
    assertThat(key(createUdf("globex", "add_one", addOne()))).isNotEqualTo(key(first));
  }
}
