package dev.kiln.provisioner.kubernetes;

import static dev.kiln.provisioner.kubernetes.KubernetesMock.await;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxImage;
import dev.kiln.provisioner.SandboxSpec;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Sandboxes as pods, against fabric8's mock API server in CRUD mode ({@link KubernetesMock}: the
 * one fake, since no Kubernetes API server can be installed here) with the real reconciler. No
 * kubelet runs, so the test marks the reconciler's pods ready itself, as a kubelet would.
 */
class KubernetesProvisionerTest {
  private static final Duration WAIT = Duration.ofSeconds(20);
  private static final String IMAGE = "localhost:5000/kiln/udf@sha256:" + "c".repeat(64);
  private static final List<String> LISTEN =
      List.of("python3", "/kiln/runner/kiln_runner.py", "listen", "0.0.0.0:7070");

  private final KubernetesSettings settings =
      KubernetesSettings.defaults("kiln").withLeaseDuration(Duration.ofSeconds(2));
  private final AtomicInteger ips = new AtomicInteger(20);
  private KubernetesMock mock;
  private KubernetesClient client;
  private KubernetesCaches caches;
  private UdfWorkerReconciler reconciler;
  private KubernetesProvisioner pods;

  @BeforeEach
  void start() throws Exception {
    mock = new KubernetesMock();
    client = mock.client();
    // As a Kiln replica runs them: one client, and caches its reconciler and provisioner share.
    KubernetesClient replica = mock.client();
    caches = KubernetesCaches.start(replica, settings);
    reconciler = new UdfWorkerReconciler(replica, caches, settings, "kiln-a");
    reconciler.start();
    pods = new KubernetesProvisioner(replica, caches, settings, WAIT, "kiln-a");
    // What a kubelet does: every new pod of the reconciler becomes ready at an address of its own.
    client
        .pods()
        .inAnyNamespace()
        .inform(
            new io.fabric8.kubernetes.client.informers.ResourceEventHandler<Pod>() {
              @Override
              public void onAdd(Pod p) {
                CompletableFuture.runAsync(
                    () ->
                        KubernetesMock.setPodStatus(client, p, "10.0.1." + ips.incrementAndGet()));
              }

              @Override
              public void onUpdate(Pod o, Pod p) {}

              @Override
              public void onDelete(Pod p, boolean unknown) {}
            });
  }

  @AfterEach
  void stop() {
    mock.close(); // first: see KubernetesMock#close
    pods.close();
    reconciler.close();
    caches.close();
  }

  private static SandboxSpec spec(String image, int gpus) {
    return new SandboxSpec(
            "0123456789ab",
            new SandboxImage(
                List.of(new SandboxImage.Layer("sha256:" + "d".repeat(64), "tar", Path.of("/x"))),
                LISTEN,
                List.of("PATH=/usr/bin"),
                "/",
                image),
            new Limits(512L << 20, 0.5).withGpus(gpus),
            List.of("MODEL=small"))
        .withOwner("acme");
  }

  private UdfWorker worker() {
    return KubernetesMock.worker(client, "acme", "0123456789ab");
  }

  private long readyPods() {
    return tenantPods().stream().filter(SandboxPods::isReady).count();
  }

  private List<Pod> tenantPods() {
    return client.pods().inNamespace(KubernetesNames.tenantNamespace("acme")).list().getItems();
  }

  @Test
  void eachSandboxIsAReadyPodOfTheOwnersWorkerReachedOverTcp() throws Exception {
    Sandbox first = pods.start(spec(IMAGE, 0));
    UdfWorker w = worker();
    assertThat(w.getSpec().getImage()).isEqualTo(IMAGE);
    assertThat(w.getSpec().getCommand()).isEqualTo(LISTEN);
    // The UDF's variables are in a Secret of the tenant's namespace, not in the resource.
    assertThat(w.getSpec().getEnv()).isEmpty();
    assertThat(w.getSpec().getEnvSecret()).isEqualTo(w.getMetadata().getName() + "-env");
    var secret =
        client
            .secrets()
            .inNamespace(KubernetesNames.tenantNamespace("acme"))
            .withName(w.getSpec().getEnvSecret())
            .get();
    assertThat(secret.getData())
        .containsEntry(
            "MODEL",
            java.util.Base64.getEncoder()
                .encodeToString("small".getBytes(java.nio.charset.StandardCharsets.UTF_8)));
    assertThat(tenantPods().getFirst().getSpec().getContainers().getFirst().getEnvFrom())
        .singleElement()
        .satisfies(
            e -> assertThat(e.getSecretRef().getName()).isEqualTo(secret.getMetadata().getName()));
    assertThat(w.getSpec().getCpu()).isEqualTo("0.5");
    assertThat(w.getSpec().getMemory()).isEqualTo(Long.toString(512L << 20));
    assertThat(w.getSpec().getClaims()).isEqualTo(Map.of("kiln-a", 1));
    assertThat(first.runnerEndpoint()).isPresent();
    assertThat(first.runnerEndpoint().get().getPort()).isEqualTo(7070);
    assertThatThrownBy(() -> first.exec(List.of("true"), List.of()))
        .hasMessageContaining("its runners are reached over TCP");

    Sandbox second = pods.start(spec(IMAGE, 0));
    assertThat(second.runnerEndpoint()).isNotEqualTo(first.runnerEndpoint());
    assertThat(worker().getSpec().getClaims()).isEqualTo(Map.of("kiln-a", 2));
    assertThat(pods.sandboxes()).hasSize(2);
    assertThat(tenantPods()).allSatisfy(p -> assertThat(KubernetesNames.isHeld(p)).isTrue());

    second.close();
    assertThat(second.stopped()).isDone();
    await("one pod", WAIT, () -> tenantPods().size() == 1);
    assertThat(worker().getSpec().getClaims()).isEqualTo(Map.of("kiln-a", 1));
    assertThat(first.isRunning()).isTrue();
    assertThat(tenantPods().getFirst().getMetadata().getName())
        .as("the pod still held is the one kept")
        .isEqualTo(first.id().substring(first.id().indexOf('/') + 1));

    first.close();
    await("no pods", WAIT, () -> tenantPods().isEmpty());
    assertThat(worker().getSpec().getClaims()).as("the worker stays, unclaimed").isEmpty();
  }

  @Test
  void replicasClaimPodsEachForItselfAndAReplicasFirstSandboxSharesAReadyPod() throws Exception {
    // A second replica: its own client and caches, no reconciler (replica a leads).
    KubernetesClient other = mock.client();
    try (KubernetesCaches otherCaches = KubernetesCaches.start(other, settings);
        // Alive as a replica is: else the reconciler takes its claims back as a crashed one's.
        ReplicaLeases alive =
            new ReplicaLeases(other, settings, "kiln-b", java.time.InstantSource.system());
        KubernetesProvisioner b =
            new KubernetesProvisioner(other, otherCaches, settings, WAIT, "kiln-b")) {
      Sandbox onA = pods.start(spec(IMAGE, 0));
      Sandbox onB = b.start(spec(IMAGE, 0));
      assertThat(onB.runnerEndpoint())
          .as("b's first sandbox shares a's ready pod instead of waiting for one of its own")
          .isEqualTo(onA.runnerEndpoint());
      assertThat(worker().getSpec().getClaims()).isEqualTo(Map.of("kiln-a", 1, "kiln-b", 1));
      await("a pod per claim", WAIT, () -> readyPods() == 2);
      // Each sees the other serve the worker (an idle replica does not suspend it then).
      await("a sees b's claim", WAIT, () -> pods.claimedElsewhere("acme", "0123456789ab") == 1);
      await("b sees a's claim", WAIT, () -> b.claimedElsewhere("acme", "0123456789ab") == 1);
      assertThat(b.claimedElsewhere("acme", "another")).isZero();

      // a's second sandbox takes the pod nobody holds; b's claim is untouched.
      Sandbox second = pods.start(spec(IMAGE, 0));
      assertThat(second.runnerEndpoint()).isNotEqualTo(onA.runnerEndpoint());
      assertThat(worker().getSpec().getClaims()).isEqualTo(Map.of("kiln-a", 2, "kiln-b", 1));
      await("three pods", WAIT, () -> readyPods() == 3);

      // b gives its pod back: a still holds it, so the pod nobody holds is the one removed.
      onB.close();
      assertThat(worker().getSpec().getClaims()).isEqualTo(Map.of("kiln-a", 2));
      await("a sees b's claim go", WAIT, () -> pods.claimedElsewhere("acme", "0123456789ab") == 0);
      assertThat(b.claimedElsewhere("acme", "0123456789ab")).isEqualTo(2);
      await("two pods", WAIT, () -> tenantPods().size() == 2);
      assertThat(onA.isRunning()).isTrue();
      assertThat(second.isRunning()).isTrue();
      assertThat(tenantPods()).allSatisfy(p -> assertThat(KubernetesNames.isHeld(p)).isTrue());
      onA.close();
      second.close();
      await("no pods", WAIT, () -> tenantPods().isEmpty());
    }
  }

  @Test
  void theControlPlanesRecordIsKeptInTheWorkerForEveryReplica() throws Exception {
    pods.declare("acme", "0123456789ab", "{\"first\":1}");
    assertThat(worker().getSpec().getDefinition()).isEqualTo("{\"first\":1}");
    assertThat(worker().getSpec().desiredPods()).as("no image yet, no pods").isZero();
    // Another replica reads it at once, whether its cache has the worker yet or not.
    KubernetesClient other = mock.client();
    try (KubernetesCaches otherCaches = KubernetesCaches.start(other, settings);
        KubernetesProvisioner b =
            new KubernetesProvisioner(other, otherCaches, settings, WAIT, "kiln-b")) {
      assertThat(b.record("acme", "0123456789ab")).contains("{\"first\":1}");
      assertThat(b.record("acme", "ffffffffffff")).isEmpty();
      b.declare("acme", "0123456789ab", "{\"second\":1}");
      assertThat(worker().getSpec().getDefinition())
          .as("the first record is kept")
          .contains("first");
    }
    // A sandbox of the worker leaves the record alone.
    try (Sandbox s = pods.start(spec(IMAGE, 0))) {
      assertThat(worker().getSpec().getDefinition()).isEqualTo("{\"first\":1}");
      assertThat(worker().getSpec().getImage()).isEqualTo(IMAGE);
    }
    await("listed", WAIT, () -> pods.records("acme").containsKey("0123456789ab"));
    assertThat(pods.records("other")).isEmpty();
    pods.forget("acme", "0123456789ab");
    await("forgotten", WAIT, () -> worker() == null);
    assertThat(
            client
                .secrets()
                .inNamespace(KubernetesNames.tenantNamespace("acme"))
                .withName(KubernetesNames.workerName("acme", "0123456789ab") + "-env")
                .get())
        .as("its variables go with it")
        .isNull();
  }

  @Test
  void replicasShareOneTokenSecretMadeByTheFirst() throws Exception {
    byte[] first = ReplicaSecret.loadOrCreate(client, "kiln", 32);
    byte[] again = ReplicaSecret.loadOrCreate(mock.client(), "kiln", 32);
    assertThat(first).hasSize(32).isEqualTo(again);
    assertThatThrownBy(() -> ReplicaSecret.loadOrCreate(client, "kiln", 64))
        .hasMessageContaining("fewer than 64")
        .hasMessageContaining("delete it");
  }

  @Test
  void aSandboxWhosePodGoesIsLost() throws Exception {
    Sandbox s = pods.start(spec(IMAGE, 0));
    Pod pod = tenantPods().getFirst();
    client.resource(pod).delete();
    s.stopped().get(WAIT.toSeconds(), TimeUnit.SECONDS);
    assertThat(s.isRunning()).isFalse();
    assertThat(pods.sandboxes()).isEmpty();
  }

  @Test
  void gpusGoToTheWorkersPods() throws Exception {
    try (Sandbox s = pods.start(spec(IMAGE, 1))) {
      assertThat(worker().getSpec().getGpu()).isEqualTo(1);
      assertThat(tenantPods().getFirst().getSpec().getRuntimeClassName())
          .isEqualTo(settings.gpuRuntimeClass());
    }
  }

  @Test
  void podsOfAWorkerWithEgressAreLabelledForTheirNamespacesEgressPolicyAndFindTheProxy()
      throws Exception {
    assertThatThrownBy(() -> pods.egressProxyAddress())
        .as("the proxy is not deployed")
        .hasMessageContaining("no Service kiln-egress")
        .hasMessageContaining("deploy/kubernetes/egress.yaml");
    KubernetesMock.egressService(client, "kiln", "10.96.0.42");
    assertThat(pods.egressProxyAddress()).isEqualTo("10.96.0.42:3128");

    try (Sandbox s =
        pods.start(
            spec(IMAGE, 0).withEgress(List.of("HTTPS_PROXY=http://kiln:x@10.96.0.42:3128")))) {
      assertThat(worker().getSpec().isEgress()).isTrue();
      Pod pod = tenantPods().getFirst();
      assertThat(pod.getMetadata().getLabels()).containsEntry(KubernetesNames.EGRESS, "true");
      var policies =
          client
              .network()
              .v1()
              .networkPolicies()
              .inNamespace(KubernetesNames.tenantNamespace("acme"))
              .list()
              .getItems();
      assertThat(policies)
          .extracting(p -> p.getMetadata().getName())
          .contains(SandboxPods.NETWORK_POLICY, SandboxPods.EGRESS_NETWORK_POLICY);
      assertThat(
              policies.stream()
                  .filter(p -> p.getMetadata().getName().equals(SandboxPods.EGRESS_NETWORK_POLICY))
                  .findFirst()
                  .orElseThrow()
                  .getSpec()
                  .getPodSelector()
                  .getMatchLabels())
          .as("it selects exactly the labelled pods")
          .isEqualTo(Map.of(KubernetesNames.EGRESS, "true"));
    }
    // A worker without egress: its pods carry no such label.
    try (Sandbox s = pods.start(spec(IMAGE, 0))) {
      assertThat(worker().getSpec().isEgress()).isFalse();
      await(
          "the pod without egress",
          WAIT,
          () ->
              tenantPods().stream()
                  .anyMatch(p -> !p.getMetadata().getLabels().containsKey(KubernetesNames.EGRESS)));
    }
  }

  @Test
  void anImageOnlyHereOrASandboxOfNobodyIsRefusedAndNothingIsAskedFor() {
    assertThatThrownBy(() -> pods.start(spec(null, 0)))
        .hasMessageContaining("run kiln serve with --registry");
    assertThatThrownBy(() -> pods.start(spec(IMAGE, 0).withOwner(null)))
        .hasMessageContaining("needs an owner");
    assertThat(worker()).isNull();
  }
}
