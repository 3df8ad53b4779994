package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.base.KilnException;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest.WorkerStateAction;
import dev.kiln.controlplane.proto.resource.DropWorkerRequest;
import dev.kiln.controlplane.proto.resource.Worker;
import dev.kiln.definition.DataType;
import dev.kiln.definition.QueryScripts;
import dev.kiln.egress.DenyList;
import dev.kiln.egress.EgressCredentials;
import dev.kiln.egress.EgressProxy;
import dev.kiln.image.LocalRegistry;
import dev.kiln.provisioner.kubernetes.ImagePods;
import dev.kiln.provisioner.kubernetes.KubeletStandIn;
import dev.kiln.provisioner.kubernetes.KubernetesCaches;
import dev.kiln.provisioner.kubernetes.KubernetesMock;
import dev.kiln.provisioner.kubernetes.KubernetesNames;
import dev.kiln.provisioner.kubernetes.KubernetesSettings;
import dev.kiln.provisioner.kubernetes.ReplicaSecret;
import dev.kiln.provisioner.kubernetes.SandboxPods;
import dev.kiln.provisioner.kubernetes.UdfWorker;
import dev.kiln.provisioner.kubernetes.UdfWorkerReconciler;
import dev.kiln.provisioner.kubernetes.UdfWorkerSpec;
import dev.kiln.resolver.PipMirror;
import dev.kiln.resolver.StaticIndexServer;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.TcpRunnerLauncher;
import dev.kiln.worker.UdfSignature;
import dev.kiln.worker.Vectors;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Consumer;
import java.util.function.UnaryOperator;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * UDFs in Kubernetes pods, from their pushed images: the Kiln server builds the image and pushes it
 * to a real registry ({@code --registry}, Debian's docker-registry); a {@link UdfWorker} names it;
 * the reconciler makes the pods; the {@link KubeletStandIn} pulls the image and runs each pod as a
 * real gVisor sandbox on a network namespace of its own; the runner pool reaches the pod's runner
 * listener over TCP and every row comes back right. By hand first, then through {@code kiln serve
 * --kubernetes}: one replica, two replicas sharing the workers, and pods following load and
 * idleness. The API server is fabric8's mock in CRUD mode and the kubelet a test stand-in: the two
 * fakes, since neither can run here.
 */
class KubernetesPodsIT {
  private static final Duration WAIT = Duration.ofMinutes(3);
  private static final ArrowType INT64 = new ArrowType.Int(64, true);
  private static final String CODE =
      "import humanize\n\ndef fmt(x):\n    return None if x is None else humanize.intcomma(x)\n";

  /** {@code slow(x)}: {@code x + 1} after 20 ms. */
  private static final String BRISK =
      "import time\n\ndef slow(x):\n    time.sleep(0.02)\n    return x + 1\n";

  /** {@code slow(x)}: {@code x + 1}, as ScalingIT's, without the wait. */
  private static final String SLEEPY = "def slow(x):\n    return x + 1\n";

  @TempDir Path tmp;

  @Test
  void aUdfWithPackagesRunsInPodsFromItsPushedImage() throws Exception {
    List<AutoCloseable> open = new ArrayList<>();
    try (StaticIndexServer mirror = new StaticIndexServer(PipMirror.fileIndexes());
        LocalRegistry registry = LocalRegistry.start(tmp.resolve("registry"));
        RunningKiln kiln =
            RunningKiln.start(
                tmp.resolve("data"),
                c ->
                    c.indexUrls(mirror.indexUrls().stream().map(URI::toString).toList())
                        .registry("127.0.0.1:" + registry.port() + "/kiln", false));
        KubernetesMock api = new KubernetesMock();
        BufferAllocator allocator = new RootAllocator()) {
      // The server builds the image and pushes it; its progress report names it by digest.
      DatabendClient.Resource resource = applyFmt(kiln);
      JsonNode last = null;
      UdfProgress.Watch watch =
          kiln.server().watchProgress("acme", resource.key(), WAIT).orElseThrow();
      for (JsonNode r = watch.next(); r != null; r = watch.next()) {
        last = r;
      }
      assertThat(last.path("state").asText()).as(last.toString()).isEqualTo("ready");
      String image = last.path("image_reference").asText();
      assertThat(image)
          .startsWith("127.0.0.1:" + registry.port() + "/kiln@sha256:")
          .as("a pod pulls the image by digest");

      KubernetesSettings settings =
          KubernetesSettings.defaults("kiln").withLeaseDuration(Duration.ofSeconds(3));
      KubernetesClient replica = api.client();
      UdfWorkerReconciler reconciler =
          new UdfWorkerReconciler(
              replica, KubernetesCaches.start(replica, settings), settings, "kiln-0");
      open.add(reconciler);
      reconciler.start();
      KubeletStandIn kubelet = new KubeletStandIn(api.client(), tmp.resolve("node")).start();
      open.add(kubelet);

      KubernetesClient client = api.client();
      UdfWorker w = new UdfWorker();
      w.getMetadata().setName(KubernetesNames.workerName("acme", "fmt"));
      w.getMetadata().setNamespace("kiln");
      UdfWorkerSpec s = w.getSpec();
      s.setTenant("acme");
      s.setUdf("fmt");
      s.setKey(resource.key());
      s.setImage(image);
      s.setCommand(RunnerFiles.listenCommand("0.0.0.0:" + settings.runnerPort()));
      s.setCpu("1");
      s.setEnv(Map.of("PYTHONFAULTHANDLER", "1"));
      s.setMemory("512Mi");
      s.setReplicas(1);
      s.setMaxReplicas(2);
      long t0 = System.nanoTime();
      client.resource(w).create();
      KubernetesMock.await("a pod", WAIT, () -> !pods(client).isEmpty());
      long tPod = System.nanoTime();
      KubernetesMock.await("a ready endpoint", WAIT, () -> endpoints(client).size() == 1);
      long tReady = System.nanoTime();

      UdfSignature signature =
          new UdfSignature(
              "fmt", List.of(DataType.parse("BIGINT NULL")), DataType.parse("VARCHAR NULL"));
      RunnerPool pool = pool(signature, endpoints(client).getFirst());
      open.add(pool);
      assertThat(call(pool, allocator, Arrays.asList(1234567L, null, 42L)))
          .containsExactly("1,234,567", null, "42");
      long tResult = System.nanoTime();
      System.out.printf(
          "UdfWorker created -> pod created %d ms, -> pod ready %d ms (image pulled, sandbox"
              + " started), -> first result %d ms%n",
          (tPod - t0) / 1_000_000, (tReady - t0) / 1_000_000, (tResult - t0) / 1_000_000);

      // Two pods under load, each answering; then none while suspended.
      edit(client, w, spec -> spec.setReplicas(2));
      KubernetesMock.await("two ready endpoints", WAIT, () -> endpoints(client).size() == 2);
      RunnerPool second = pool(signature, endpoints(client).getLast());
      open.add(second);
      List<Long> many = new ArrayList<>();
      for (long i = 0; i < 20_000; i++) {
        many.add(i * 1000);
      }
      List<Object> out = call(second, allocator, many);
      assertThat(out).hasSize(20_000);
      assertThat(out.get(19_999)).isEqualTo("19,999,000");

      edit(client, w, spec -> spec.setSuspended(true));
      KubernetesMock.await("no pods", WAIT, () -> pods(client).isEmpty());
      KubernetesMock.await("no sandboxes", WAIT, () -> kubelet.sandboxes() == 0);

      // What the image builder asks of a base's Python when Kiln cannot run gVisor itself: a pod
      // that runs once; its output comes back as the termination message, its failure says why.
      ImagePods probes = new ImagePods(client, settings);
      assertThat(
              probes.run(
                  image, List.of("python3", "-c", "import sys; print(sys.version_info[:2])"), WAIT))
          .contains("(3, 11)");
      assertThatThrownBy(
              () ->
                  probes.run(
                      image,
                      List.of("python3", "-c", "import sys; sys.exit('no such base')"),
                      WAIT))
          .hasMessageContaining("exit code 1")
          .hasMessageContaining("no such base");
      assertThatThrownBy(
              () -> probes.run(image, List.of("python3", "-c", "print('x' * 5000)"), WAIT))
          .hasMessageContaining("4096 bytes or more");
      assertThat(
              client
                  .pods()
                  .inNamespace("kiln")
                  .withLabel(KubernetesNames.COMPONENT, ImagePods.COMPONENT)
                  .list()
                  .getItems())
          .as("each probe pod deleted after it ended")
          .isEmpty();
    } finally {
      for (AutoCloseable c : open.reversed()) {
        c.close();
      }
    }
  }

  /**
   * Through {@code kiln serve}, to a registry that wants a login (the node has its own), with no
   * gVisor of its own, as in the Deployment's pod: the base's Python is probed in a pod.
   */
  @Test
  void kilnServeOnKubernetesAnswersFromAPod() throws Exception {
    Path password = java.nio.file.Files.writeString(tmp.resolve("registry-password"), "s3cret\n");
    try (StaticIndexServer mirror = new StaticIndexServer(PipMirror.fileIndexes());
        LocalRegistry registry =
            LocalRegistry.startWithLogin(tmp.resolve("registry"), "kiln", "s3cret");
        KubernetesMock api = new KubernetesMock();
        KubeletStandIn kubelet =
            new KubeletStandIn(api.client(), tmp.resolve("node"))
                .withPullLogin("kiln", "s3cret")
                .start()) {
      Path kubeconfig = api.kubeconfig(tmp);
      try (RunningKiln kiln =
              RunningKiln.start(
                  tmp.resolve("data"),
                  c ->
                      c.indexUrls(mirror.indexUrls().stream().map(URI::toString).toList())
                          .registry("127.0.0.1:" + registry.port() + "/kiln", false)
                          .set("registry-username", "kiln")
                          .set("registry-password-file", password.toString())
                          .set("runsc", tmp.resolve("no-runsc-here").toString())
                          .kubernetes(kubeconfig, "kiln"));
          BufferAllocator allocator = new RootAllocator()) {
        servesFromAPod(kiln, api, kubelet, registry, allocator);
      }
    }
  }

  private static void servesFromAPod(
      RunningKiln kiln,
      KubernetesMock api,
      KubeletStandIn kubelet,
      LocalRegistry registry,
      BufferAllocator allocator)
      throws Exception {
    {
      long t0 = System.nanoTime();
      DatabendClient.Resource resource = applyFmt(kiln);
      List<List<Object>> rows =
          KilnTestSupport.call(
              allocator, resource, "acme", "fmt", List.of("BIGINT NULL"), "[[1234567],[null],[7]]");
      long tResult = System.nanoTime();
      assertThat(rows)
          .containsExactly(List.of("1,234,567"), Arrays.asList((Object) null), List.of("7"));
      System.out.printf(
          "kiln serve --kubernetes: ApplyUdfResource -> first result through a pod %d ms%n",
          (tResult - t0) / 1_000_000);

      KubernetesClient client = api.client();
      UdfWorker w = worker(client, resource.key());
      assertThat(w).as("the UdfWorker of (acme, key)").isNotNull();
      assertThat(w.getSpec().getImage())
          .startsWith("127.0.0.1:" + registry.port() + "/kiln@sha256:");
      assertThat(w.getStatus().getPhase()).isEqualTo("Ready");
      assertThat(pods(client)).hasSize(1);
      assertThat(kubelet.sandboxes()).isEqualTo(1);
    }
    // What Query sends today: a CreateWorker script with a package and a staged import, fetched
    // through its presigned URL (a real HTTP server plays the stage) into the pod's image.
    com.sun.net.httpserver.HttpServer stage =
        com.sun.net.httpserver.HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    stage.createContext(
        "/v.txt",
        exchange -> {
          byte[] body = "staged v1".getBytes(java.nio.charset.StandardCharsets.UTF_8);
          exchange.getResponseHeaders().set("ETag", "\"v1\"");
          exchange.sendResponseHeaders(200, body.length);
          exchange.getResponseBody().write(body);
          exchange.close();
        });
    stage.start();
    try {
      String script =
          QueryScripts.udf(
                  "import os, sys, humanize\n"
                      + "def staged(x):\n"
                      + "    d = sys._xoptions['databend_import_directory']\n"
                      + "    with open(os.path.join(d, 'v.txt')) as f:\n"
                      + "        return f.read() + ' ' + humanize.intcomma(x)\n",
                  "staged")
              .packages("humanize")
              .inputs("BIGINT NULL")
              .result("VARCHAR NULL")
              .addImport(
                  "@stage/udf/v.txt",
                  "http://127.0.0.1:" + stage.getAddress().getPort() + "/v.txt?X-Amz-Signature=1",
                  Map.of("host", "127.0.0.1"))
              .render();
      DatabendClient.Resource staged =
          kiln.api().createWorker("acme", "staged", script, Duration.ofSeconds(5));
      assertThat(
              KilnTestSupport.call(
                  allocator, staged, "acme", "staged", List.of("BIGINT NULL"), "[[1234567]]"))
          .containsExactly(List.of("staged v1 1,234,567"));
      assertThat(worker(api.client(), staged.key()).getSpec().getImage())
          .as("its own image, pulled by the pod")
          .startsWith("127.0.0.1:" + registry.port() + "/kiln@sha256:");

      egressFromAPod(kiln, api, kubelet, stage.getAddress().getPort(), allocator);
    } finally {
      stage.stop(0);
    }
  }

  /**
   * A worker with egress: its pod reaches the egress proxy Deployment (an {@link EgressProxy} that
   * checks credentials with the replicas' shared secret, as {@code kiln egress} does) at the proxy
   * Service's cluster address, which the stand-in routes as kube-proxy would; an allowed host
   * answers, another is refused naming the ALTER WORKER to run.
   */
  private static void egressFromAPod(
      RunningKiln kiln,
      KubernetesMock api,
      KubeletStandIn kubelet,
      int sitePort,
      BufferAllocator allocator)
      throws Exception {
    KubernetesClient client = api.client();
    byte[] shared = ReplicaSecret.loadOrCreate(client, "kiln", 32);
    EgressProxy.Resolver names =
        host ->
            host.equals("api.allowed.test") || host.equals("evil.test")
                ? List.of(java.net.InetAddress.getByName("127.0.0.1"))
                : List.of(java.net.InetAddress.getAllByName(host));
    try (EgressProxy deployment =
        EgressProxy.start(
            new InetSocketAddress(0),
            DenyList.parse(List.of("169.254.0.0/16")),
            names,
            d -> {},
            a -> true,
            EgressCredentials.fromSharedSecret(shared))) {
      KubernetesMock.egressService(client, "kiln", "10.96.0.42");
      kubelet.routeService("10.96.0.42", SandboxPods.EGRESS_PROXY_PORT, deployment.port());
      DatabendClient.Resource r = EgressEndToEndIT.fetcher(kiln.api(), "api.allowed.test");
      assertThat(
              EgressEndToEndIT.fetch(
                  allocator, r, "http://api.allowed.test:" + sitePort + "/v.txt"))
          .isEqualTo("staged v1");
      assertThat(EgressEndToEndIT.fetch(allocator, r, "http://evil.test:" + sitePort + "/v.txt"))
          .contains("403")
          .contains("ALTER WORKER fetcher SET egress = 'api.allowed.test,evil.test'");
      assertThat(
              pods(client).stream()
                  .filter(
                      p -> "true".equals(p.getMetadata().getLabels().get(KubernetesNames.EGRESS))))
          .as("the worker's pod is labelled for its namespace's egress policy")
          .hasSize(1);
    }
  }

  /**
   * Two replicas on one API server, as behind one Service: the request lands on one, the Flight
   * calls on the other, which finds the definition in the UdfWorker, checks the token with the
   * secret both share, and serves from the worker's pods; then the first replica stops and the
   * second, leading now, reconciles the worker down to its own claim and goes on serving.
   */
  @Test
  void anyReplicaServesTheCallsOfAUdfAnotherProvisioned() throws Exception {
    try (StaticIndexServer mirror = new StaticIndexServer(PipMirror.fileIndexes());
        LocalRegistry registry = LocalRegistry.start(tmp.resolve("registry"));
        KubernetesMock api = new KubernetesMock();
        KubeletStandIn kubelet = new KubeletStandIn(api.client(), tmp.resolve("node")).start();
        BufferAllocator allocator = new RootAllocator()) {
      Path kubeconfig = api.kubeconfig(tmp);
      // The same configuration on every replica, as from one ConfigMap: the UDF's variables too.
      Path envFile =
          java.nio.file.Files.writeString(
              tmp.resolve("udf_env.toml"),
              "[udf_env]\n\"acme.read_env\" = { GREETING = \"hi from a Secret\" }\n");
      UnaryOperator<KilnConfigBuilder> replica =
          c ->
              c.indexUrls(mirror.indexUrls().stream().map(URI::toString).toList())
                  .registry("127.0.0.1:" + registry.port() + "/kiln", false)
                  .set("udf-env", envFile.toString())
                  .kubernetes(kubeconfig, "kiln");
      KubernetesClient client = api.client();
      // The first to start takes the lease: a reconciles until it stops.
      RunningKiln a = RunningKiln.start(tmp.resolve("data-a"), replica);
      KubernetesMock.await("replica a leading", WAIT, () -> leader(client).equals(identity(a)));
      RunningKiln b;
      try {
        b = RunningKiln.start(tmp.resolve("data-b"), replica);
      } catch (RuntimeException | KilnException | java.io.IOException e) {
        a.close();
        throw e;
      }
      try (b) {
        DatabendClient.Resource onA;
        try (a) {
          long t0 = System.nanoTime();
          onA = applyFmt(a);
          // Databend calls the endpoint it was given; behind a Service that may be any replica.
          DatabendClient.Resource onB = at(b, onA);
          assertThat(fmt(allocator, onB, 1234567L)).isEqualTo("1,234,567");
          long tB = System.nanoTime();
          assertThat(fmt(allocator, onA, 42L)).isEqualTo("42");
          System.out.printf(
              "two replicas: ApplyUdfResource on one -> first result through the other %d ms%n",
              (tB - t0) / 1_000_000);
          // One builder: the replica that answered the request built and pushed the image; the
          // other ran it as it was, without resolving or building anything.
          JsonNode builtOnA = lastReport(a, onA.key());
          JsonNode builtOnB = lastReport(b, onA.key());
          assertThat(builtOnA.path("image_built_here").asBoolean())
              .as(builtOnA.toString())
              .isTrue();
          assertThat(builtOnB.path("image_built_here").asBoolean())
              .as(builtOnB.toString())
              .isFalse();
          assertThat(builtOnB.path("image_reference").asText())
              .isEqualTo(builtOnA.path("image_reference").asText());
          UdfWorker w = worker(client, onA.key());
          assertThat(w.getSpec().getDefinition())
              .as("the definition, for every replica")
              .isNotNull();
          assertThat(w.getSpec().getClaims()).as("a claim of each replica").hasSize(2);
          assertThat(kubelet.sandboxes()).isBetween(1, 2);

          // What Databend sends today: a worker (CREATE WORKER) and its UDF, on A; calls on B.
          // Workers are kept in the API server: B lists them, and a worker one replica suspends
          // or drops is suspended or dropped on the other too.
          ScalingIT.worker(a.api(), "busy", Map.of());
          DatabendClient.Resource worker = ScalingIT.udf(a.api(), "busy", SLEEPY);
          assertThat(ScalingIT.call(allocator, at(b, worker), 41)).isEqualTo(42);
          assertThat(workerStates(b)).containsEntry("busy", "running");
          assertThat(ScalingIT.call(allocator, worker, 1)).isEqualTo(2);
          assertThat(worker(client, worker.key()).getSpec().getClaims())
              .as("a sandbox of busy on each replica")
              .hasSize(2);
          alter(b, "busy", WorkerStateAction.Suspend);
          assertThat(workerStates(a)).containsEntry("busy", "suspended");
          KubernetesMock.await(
              "replica a stops its sandbox of the worker b suspended",
              WAIT,
              () -> worker(client, worker.key()).getSpec().claimedPods() == 0);
          // A query on A resumes it for everyone (auto_resume).
          assertThat(ScalingIT.call(allocator, worker, 2)).isEqualTo(3);
          assertThat(workerStates(b)).containsEntry("busy", "running");

          // A worker's variables reach its pods through a Secret, never the UdfWorker.
          ScalingIT.worker(a.api(), "read_env", Map.of());
          DatabendClient.Resource readEnv =
              a.api()
                  .createWorker(
                      "acme",
                      "read_env",
                      QueryScripts.udf(
                              "import os\ndef read_env() -> str:\n    return os.getenv('GREETING',"
                                  + " '')\n",
                              "read_env")
                          .result("STRING NULL")
                          .render(),
                      Duration.ofSeconds(5));
          assertThat(
                  KilnTestSupport.call(
                      allocator, at(b, readEnv), "acme", "read_env", List.of(), "[[]]"))
              .containsExactly(List.of("hi from a Secret"));
          UdfWorker envWorker = worker(client, readEnv.key());
          assertThat(envWorker.getSpec().getEnvSecret()).isNotEmpty();
          assertThat(client.getKubernetesSerialization().asJson(envWorker))
              .doesNotContain("hi from a Secret");

          // Dropped on B: gone from A's list, and A no longer serves its UDF.
          b.api()
              .workers("acme", Duration.ofSeconds(5))
              .dropWorker(
                  DropWorkerRequest.newBuilder().setTenantId("acme").setName("read_env").build());
          assertThat(workerStates(a)).doesNotContainKey("read_env").containsKey("busy");
          KubernetesMock.await(
              "the dropped worker's UdfWorker deleted",
              WAIT,
              () -> worker(client, readEnv.key()) == null);
          assertThatThrownBy(
                  () ->
                      KilnTestSupport.call(
                          allocator, readEnv, "acme", "read_env", List.of(), "[[]]"))
              .hasMessageContaining("dropped")
              .hasMessageContaining("run the query again");
        }
        // b leads once the lease runs out, and keeps the pods its own claim asks for.
        long stopped = System.nanoTime();
        KubernetesMock.await("replica b leading", WAIT, () -> leader(client).equals(identity(b)));
        assertThat(worker(client, onA.key()).getSpec().getClaims())
            .as("a gave its claim back when it stopped")
            .hasSize(1);
        String fmtWorker = worker(client, onA.key()).getMetadata().getName();
        KubernetesMock.await(
            "one pod of the worker",
            WAIT,
            () ->
                client
                        .pods()
                        .inNamespace(KubernetesNames.tenantNamespace("acme"))
                        .withLabel(KubernetesNames.WORKER, fmtWorker)
                        .list()
                        .getItems()
                        .size()
                    == 1);
        System.out.printf(
            "two replicas: the leader stopped -> the other reconciled the worker to its claim %d"
                + " ms%n",
            (System.nanoTime() - stopped) / 1_000_000);
        assertThat(fmt(allocator, at(b, onA), 7L)).isEqualTo("7");
      }
    }
  }

  /** SHOW WORKERS on {@code replica}: each worker's name and state. */
  private static Map<String, String> workerStates(RunningKiln replica) {
    Map<String, String> out = new java.util.TreeMap<>();
    for (Worker w : replica.api().listWorkers("acme", Duration.ofSeconds(5))) {
      out.put(w.getName(), w.getOptionsMap().get(WorkerService.STATE_OPTION));
    }
    return out;
  }

  private static void alter(RunningKiln replica, String name, WorkerStateAction action) {
    replica
        .api()
        .workers("acme", Duration.ofSeconds(5))
        .alterWorker(
            AlterWorkerRequest.newBuilder()
                .setTenantId("acme")
                .setName(name)
                .setStateAction(action)
                .build());
  }

  private static JsonNode lastReport(RunningKiln replica, String key) throws Exception {
    JsonNode last = null;
    UdfProgress.Watch watch = replica.server().watchProgress("acme", key, WAIT).orElseThrow();
    for (JsonNode r = watch.next(); r != null; r = watch.next()) {
      last = r;
    }
    assertThat(last.path("state").asText()).as(last.toString()).isEqualTo("ready");
    return last;
  }

  private static String leader(KubernetesClient client) {
    var lease = client.leases().inNamespace("kiln").withName(UdfWorkerReconciler.LEASE).get();
    return lease == null ? "" : String.valueOf(lease.getSpec().getHolderIdentity());
  }

  private static String identity(RunningKiln replica) {
    return KubernetesBackend.identity(replica.dataDir());
  }

  /** The resource Databend got from one replica, called at {@code replica}'s endpoint. */
  private static DatabendClient.Resource at(RunningKiln replica, DatabendClient.Resource r) {
    return new DatabendClient.Resource(replica.server().endpoint(), r.headers(), r.key());
  }

  private static Object fmt(BufferAllocator allocator, DatabendClient.Resource r, long x)
      throws Exception {
    return KilnTestSupport.call(
            allocator, r, "acme", "fmt", List.of("BIGINT NULL"), "[[" + x + "]]")
        .getFirst()
        .getFirst();
  }

  /** The UdfWorker of tenant acme's resource of {@code key}: named by the key's short form. */
  private static UdfWorker worker(KubernetesClient client, String key) {
    return KubernetesMock.worker(client, "acme", key.substring(0, 12));
  }

  @Test
  void podsFollowLoadAndIdleness() throws Exception {
    try (LocalRegistry registry = LocalRegistry.start(tmp.resolve("registry"));
        KubernetesMock api = new KubernetesMock();
        KubeletStandIn kubelet = new KubeletStandIn(api.client(), tmp.resolve("node")).start();
        // Platform threads, as Databend's calls come from another process: Arrow's Flight client
        // spins until a stream is ready, which on virtual threads would starve the server's own.
        ExecutorService callers = Executors.newFixedThreadPool(256)) {
      Path kubeconfig = api.kubeconfig(tmp);
      KubernetesClient client = api.client();
      try (RunningKiln kiln =
              RunningKiln.start(
                  tmp.resolve("data"),
                  c ->
                      c.set("scale-down-after", "2s")
                          .registry("127.0.0.1:" + registry.port() + "/kiln", false)
                          .kubernetes(kubeconfig, "kiln"));
          BufferAllocator allocator = new RootAllocator()) {
        ScalingIT.worker(kiln.api(), "busy", Map.of("max_cluster_count", "2"));
        DatabendClient.Resource r = ScalingIT.udf(kiln.api(), "busy", BRISK);
        assertThat(ScalingIT.call(allocator, r, 1)).isEqualTo(2);
        assertThat(pods(client)).hasSize(1);

        // As Databend drives it: 256 calls in flight, each on its own connection. They queue on
        // the one pod until a second pod takes some.
        long t0 = System.nanoTime();
        int[] seen = new int[2]; // pods and stand-in sandboxes once the server had 2 sandboxes
        List<CompletableFuture<Long>> calls =
            ScalingIT.loadUntil(
                kiln,
                "busy",
                2,
                allocator,
                r,
                callers,
                256,
                WAIT,
                () -> {
                  seen[0] = pods(client).size();
                  seen[1] = kubelet.sandboxes();
                });
        assertThat(calls).allSatisfy(c -> assertThat(c.join()).isEqualTo(1));
        System.out.printf(
            "256 calls in flight on one pod: a second pod started under them, all %2$d answered"
                + " right in %1$d ms%n",
            (System.nanoTime() - t0) / 1_000_000, calls.size());
        // Looked at while the calls ran: the added pod may sit idle under them (calls already
        // queued stay on the first pod) and go after --scale-down-after before they end.
        assertThat(seen[0]).as("pods").isEqualTo(2);
        assertThat(seen[1]).as("sandboxes the stand-in runs").isEqualTo(2);

        KubernetesMock.await("the added pod gone when idle", WAIT, () -> pods(client).size() == 1);
        assertThat(ScalingIT.call(allocator, r, 41)).isEqualTo(42);

        // A worker idle past auto_suspend has no pod; the next query resumes it with a new one.
        // (Its own code: a worker with the same code would share the first one's pods.)
        ScalingIT.worker(kiln.api(), "sleepy", Map.of("auto_suspend", "1"));
        DatabendClient.Resource sleepy = ScalingIT.udf(kiln.api(), "sleepy", SLEEPY);
        assertThat(ScalingIT.call(allocator, sleepy, 1)).isEqualTo(2);
        assertThat(pods(client)).hasSize(2);
        KubernetesMock.await("the idle worker's pod gone", WAIT, () -> pods(client).size() == 1);
        assertThat(
                kiln.api().listWorkers("acme", Duration.ofSeconds(5)).stream()
                    .filter(w -> w.getName().equals("sleepy"))
                    .findFirst()
                    .orElseThrow()
                    .getOptionsMap())
            .containsEntry("state", "suspended");
        DatabendClient.Resource resumed = ScalingIT.udf(kiln.api(), "sleepy", SLEEPY);
        assertThat(ScalingIT.call(allocator, resumed, 5)).isEqualTo(6);
        assertThat(pods(client)).hasSize(2);
      }
    }
  }

  /** ApplyUdfResource of the humanize UDF, as Databend sends it. */
  private static DatabendClient.Resource applyFmt(RunningKiln kiln) {
    return kiln.api()
        .apply(
            "acme",
            spec(
                "fmt",
                List.of("BIGINT NULL"),
                "VARCHAR NULL",
                List.of(),
                List.of("humanize"),
                CODE));
  }

  private static List<io.fabric8.kubernetes.api.model.Pod> pods(KubernetesClient client) {
    return client.pods().inNamespace(KubernetesNames.tenantNamespace("acme")).list().getItems();
  }

  private static List<String> endpoints(KubernetesClient client) {
    UdfWorker w = KubernetesMock.worker(client, "acme", "fmt");
    return w == null || w.getStatus() == null ? List.of() : w.getStatus().getEndpoints();
  }

  /** A spec change as the control plane makes it: a JSON patch of the spec alone. */
  private static void edit(KubernetesClient client, UdfWorker w, Consumer<UdfWorkerSpec> edit) {
    String name = w.getMetadata().getName();
    UdfWorkerSpec spec =
        client.resources(UdfWorker.class).inNamespace("kiln").withName(name).get().getSpec();
    edit.accept(spec);
    UdfWorker.replaceSpec(client, "kiln", name, spec);
  }

  private static RunnerPool pool(UdfSignature signature, String endpoint) throws Exception {
    int colon = endpoint.lastIndexOf(':');
    return RunnerPool.start(
        signature,
        new TcpRunnerLauncher(
            new InetSocketAddress(
                endpoint.substring(0, colon), Integer.parseInt(endpoint.substring(colon + 1))),
            Duration.ofSeconds(5)),
        new RunnerPool.Options(1, Duration.ofSeconds(60), Duration.ofSeconds(60), 50));
  }

  private static List<Object> call(RunnerPool pool, BufferAllocator allocator, List<Long> xs)
      throws Exception {
    try (FieldVector in = Vectors.of(allocator, "arg1", INT64, xs);
        FieldVector out = pool.call(List.of(in), xs.size(), allocator)) {
      return Vectors.values(out);
    }
  }
}
