package dev.kiln.provisioner.kubernetes;

import static dev.kiln.provisioner.kubernetes.KubernetesMock.await;
import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The reconciler against fabric8's mock API server in CRUD mode ({@link KubernetesMock}: the one
 * fake, since no Kubernetes API server can be installed here). No kubelet runs on the mock, so
 * these tests mark pods ready or ended themselves, as a kubelet would.
 */
class UdfWorkerReconcilerTest {
  private static final Duration WAIT = Duration.ofSeconds(20);
  private static final String IMAGE = "localhost:5000/kiln/udf@sha256:" + "a".repeat(64);

  private final KubernetesSettings settings =
      KubernetesSettings.defaults("kiln").withLeaseDuration(Duration.ofSeconds(2));
  private KubernetesMock mock;
  private KubernetesClient client;
  private KubernetesClient leaderClient;
  private UdfWorkerReconciler reconciler;
  private final AtomicInteger ips = new AtomicInteger(10);

  @BeforeEach
  void start() throws Exception {
    mock = new KubernetesMock();
    client = mock.client();
    leaderClient = mock.client();
    reconciler =
        new UdfWorkerReconciler(
            leaderClient, KubernetesCaches.start(leaderClient, settings), settings, "kiln-a");
    reconciler.start();
    await("kiln-a to lead", WAIT, reconciler::isLeader);
  }

  @AfterEach
  void stop() {
    mock.close(); // first: see KubernetesMock#close
    reconciler.close();
  }

  private UdfWorker create(String tenant, String udf, Consumer<UdfWorkerSpec> edit) {
    UdfWorker w = new UdfWorker();
    w.getMetadata().setName(KubernetesNames.workerName(tenant, udf));
    w.getMetadata().setNamespace("kiln");
    UdfWorkerSpec s = w.getSpec();
    s.setTenant(tenant);
    s.setUdf(udf);
    s.setKey("k-" + udf);
    s.setImage(IMAGE);
    s.setCommand(List.of("python3", "/kiln/runner/kiln_runner.py", "listen", "0.0.0.0:7070"));
    s.setEnv(Map.of("MODEL", "small"));
    s.setCpu("2");
    s.setMemory("512Mi");
    s.setReplicas(2);
    s.setMaxReplicas(3);
    edit.accept(s);
    return client.resource(w).create();
  }

  /**
   * Changes the worker's spec as the control plane does: a JSON patch (RFC 6902) of the spec alone,
   * so it never conflicts with the reconciler's status updates.
   */
  private void edit(UdfWorker w, Consumer<UdfWorkerSpec> edit) {
    String name = w.getMetadata().getName();
    UdfWorkerSpec spec =
        client.resources(UdfWorker.class).inNamespace("kiln").withName(name).get().getSpec();
    edit.accept(spec);
    UdfWorker.replaceSpec(client, "kiln", name, spec);
  }

  private List<Pod> pods(UdfWorker w) {
    return client
        .pods()
        .inNamespace(KubernetesNames.tenantNamespace(w.getSpec().getTenant()))
        .withLabel(KubernetesNames.WORKER, w.getMetadata().getName())
        .list()
        .getItems();
  }

  private UdfWorkerStatus status(UdfWorker w) {
    UdfWorker now =
        client
            .resources(UdfWorker.class)
            .inNamespace("kiln")
            .withName(w.getMetadata().getName())
            .get();
    return now == null || now.getStatus() == null ? new UdfWorkerStatus() : now.getStatus();
  }

  /** What a kubelet would write once the pod's readiness probe passes; returns the pod's IP. */
  private String markReady(Pod p) {
    String ip = "10.0.0." + ips.incrementAndGet();
    KubernetesMock.setPodStatus(client, p, ip);
    return ip + ":7070";
  }

  private void awaitPods(UdfWorker w, int n) throws InterruptedException {
    await(n + " pods of " + w.getMetadata().getName(), WAIT, () -> pods(w).size() == n);
  }

  @Test
  void theClaimsAndPodMarksOfAReplicaWhoseLeaseLapsedAreTakenBack() throws Exception {
    // kiln-b runs (its lease is renewed); "crashed" claimed a pod and marked it, then died.
    try (ReplicaLeases b =
        new ReplicaLeases(mock.client(), settings, "kiln-b", java.time.InstantSource.system())) {
      UdfWorker w =
          create(
              "acme",
              "shared",
              s -> {
                s.setReplicas(0);
                s.setMaxReplicas(10);
                s.setClaims(new java.util.TreeMap<>(Map.of("kiln-b", 1, "crashed", 1)));
              });
      awaitPods(w, 2);
      Pod held = pods(w).getFirst();
      client
          .pods()
          .inNamespace(held.getMetadata().getNamespace())
          .withName(held.getMetadata().getName())
          .edit(
              p -> {
                p.getMetadata()
                    .setAnnotations(Map.of(KubernetesNames.holder("crashed"), "crashed"));
                return p;
              });
      await(
          "the crashed replica's claim taken back",
          WAIT,
          () ->
              client
                  .resources(UdfWorker.class)
                  .inNamespace("kiln")
                  .withName(w.getMetadata().getName())
                  .get()
                  .getSpec()
                  .getClaims()
                  .equals(Map.of("kiln-b", 1)));
      awaitPods(w, 1);
      await("no pod marked by it", WAIT, () -> pods(w).stream().noneMatch(KubernetesNames::isHeld));
    }
  }

  @Test
  void aWorkerGetsSandboxPodsInItsTenantsLockedDownNamespace() throws Exception {
    UdfWorker w = create("Acme Corp", "add_one", s -> {});
    awaitPods(w, 2);
    String ns = KubernetesNames.tenantNamespace("Acme Corp");
    assertThat(ns).matches("[a-z0-9]([-a-z0-9]*[a-z0-9])?").hasSizeLessThanOrEqualTo(63);

    Pod pod = pods(w).getFirst();
    assertThat(pod.getMetadata().getNamespace()).isEqualTo(ns);
    assertThat(pod.getSpec().getRuntimeClassName()).isEqualTo("gvisor");
    assertThat(pod.getSpec().getAutomountServiceAccountToken()).isFalse();
    assertThat(pod.getSpec().getSecurityContext().getRunAsNonRoot()).isTrue();
    Container c = pod.getSpec().getContainers().getFirst();
    assertThat(c.getImage()).isEqualTo(IMAGE);
    assertThat(c.getCommand()).endsWith("listen", "0.0.0.0:7070");
    assertThat(c.getEnv())
        .anyMatch(e -> e.getName().equals("MODEL") && e.getValue().equals("small"));
    assertThat(c.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
    assertThat(c.getSecurityContext().getAllowPrivilegeEscalation()).isFalse();
    assertThat(c.getSecurityContext().getCapabilities().getDrop()).containsExactly("ALL");
    assertThat(c.getResources().getRequests())
        .containsEntry("cpu", new Quantity("2"))
        .containsEntry("memory", new Quantity("512Mi"));
    assertThat(c.getResources().getLimits()).isEqualTo(c.getResources().getRequests());
    assertThat(c.getPorts().getFirst().getContainerPort()).isEqualTo(7070);

    assertThat(client.namespaces().withName(ns).get().getMetadata().getLabels())
        .containsEntry(KubernetesNames.MANAGED_BY, "kiln");
    var policy = client.network().v1().networkPolicies().inNamespace(ns).withName("kiln-sandboxes");
    assertThat(policy.get().getSpec())
        .isEqualTo(SandboxPods.networkPolicy("Acme Corp", settings).getSpec());
    assertThat(policy.get().getSpec().getEgress()).isEmpty();
    assertThat(policy.get().getSpec().getPodSelector().getMatchLabels()).isNullOrEmpty();

    await("status Starting", WAIT, () -> "Starting".equals(status(w).getPhase()));
    assertThat(status(w).getPods()).isEqualTo(2);
    assertThat(status(w).getReadyPods()).isZero();
  }

  /**
   * Removing a pod no replica holds races a replica taking it: the reconciler marks it condemned
   * first and keeps it when the answer shows a holder; a condemned pod nobody holds goes (and is
   * replaced while the worker wants it).
   */
  @Test
  void aPodNobodyHeldIsCondemnedBeforeItGoesAndKeptWhenARepicaTookItMeanwhile() throws Exception {
    UdfWorker w = create("acme", "race", s -> s.setReplicas(1));
    awaitPods(w, 1);
    Pod seen = pods(w).getFirst(); // as the reconciler last saw it: nobody holds it
    var pod =
        client
            .pods()
            .inNamespace(seen.getMetadata().getNamespace())
            .withName(seen.getMetadata().getName());
    pod.edit(
        p -> {
          p.getMetadata().getAnnotations().put(KubernetesNames.holder("kiln-b"), "kiln-b");
          return p;
        });
    assertThat(reconciler.condemn(seen)).as("held by now: kept").isFalse();
    assertThat(KubernetesNames.isCondemned(pod.get())).isFalse();

    pod.edit(
        p -> {
          p.getMetadata().getAnnotations().remove(KubernetesNames.holder("kiln-b"));
          return p;
        });
    assertThat(reconciler.condemn(seen)).isTrue();
    // Condemned and unheld: removed, and a new one made for the replica the worker still wants.
    await("the condemned pod gone", WAIT, () -> pod.get() == null);
    awaitPods(w, 1);
    assertThat(KubernetesNames.isCondemned(pods(w).getFirst())).isFalse();
  }

  @Test
  void readyPodsAreTheWorkersEndpoints() throws Exception {
    UdfWorker w = create("acme", "add_one", s -> {});
    awaitPods(w, 2);
    List<String> endpoints = pods(w).stream().map(this::markReady).sorted().toList();
    await("status Ready", WAIT, () -> status(w).getEndpoints().equals(endpoints));
    assertThat(status(w).getPhase()).isEqualTo("Ready");
    assertThat(status(w).getReadyPods()).isEqualTo(2);
  }

  @Test
  void podsFollowTheWantedCountWithinTheBoundsAndReadyOnesStayLongest() throws Exception {
    UdfWorker w = create("acme", "scale", s -> s.setReplicas(1));
    awaitPods(w, 1);
    edit(w, s -> s.setReplicas(3));
    awaitPods(w, 3);
    edit(w, s -> s.setReplicas(9)); // above maxReplicas 3
    edit(w, s -> s.setKey("k-scale")); // another pass
    Pod keep = pods(w).get(1);
    String endpoint = markReady(keep);
    await("the ready pod listed", WAIT, () -> status(w).getEndpoints().equals(List.of(endpoint)));
    assertThat(pods(w)).hasSize(3);

    edit(w, s -> s.setReplicas(1));
    awaitPods(w, 1);
    assertThat(pods(w).getFirst().getMetadata().getName()).isEqualTo(keep.getMetadata().getName());

    edit(
        w,
        s -> {
          s.setReplicas(0);
          s.setMinReplicas(2);
        });
    awaitPods(w, 2);
  }

  @Test
  void aSuspendedWorkerHasNoPodsUntilResumed() throws Exception {
    UdfWorker w = create("acme", "sleepy", s -> {});
    awaitPods(w, 2);
    edit(w, s -> s.setSuspended(true));
    awaitPods(w, 0);
    await("status Suspended", WAIT, () -> "Suspended".equals(status(w).getPhase()));
    edit(w, s -> s.setSuspended(false));
    awaitPods(w, 2);
  }

  @Test
  void podsOfAnOldImageOrThatEndedAreReplaced() throws Exception {
    UdfWorker w = create("acme", "roll", s -> {});
    awaitPods(w, 2);
    Set<String> before = names(pods(w));
    String image2 = "localhost:5000/kiln/udf@sha256:" + "b".repeat(64);
    edit(w, s -> s.setImage(image2));
    await(
        "two pods of the new image",
        WAIT,
        () -> {
          List<Pod> now = pods(w);
          return now.size() == 2
              && now.stream()
                  .allMatch(p -> p.getSpec().getContainers().getFirst().getImage().equals(image2));
        });
    assertThat(names(pods(w))).doesNotContainAnyElementsOf(before);

    Pod failed = pods(w).getFirst();
    KubernetesMock.setPodStatus(client, failed, null);
    await(
        "the ended pod replaced",
        WAIT,
        () -> pods(w).size() == 2 && !names(pods(w)).contains(failed.getMetadata().getName()));
  }

  @Test
  void aWorkerWithoutImageWaitsAndADeletedWorkersPodsGo() throws Exception {
    UdfWorker waiting = create("acme", "unbuilt", s -> s.setImage(null));
    await("status Waiting", WAIT, () -> "Waiting".equals(status(waiting).getPhase()));
    assertThat(pods(waiting)).isEmpty();

    UdfWorker w = create("acme", "doomed", s -> {});
    awaitPods(w, 2);
    client.resource(w).delete();
    awaitPods(w, 0);
  }

  @Test
  void aWorkerWithAGpuGoesToGpuNodesUnderGvisorsNvproxy() throws Exception {
    UdfWorker w =
        create(
            "acme",
            "embed",
            s -> {
              s.setGpu(1);
              s.setReplicas(1);
            });
    awaitPods(w, 1);
    Pod pod = pods(w).getFirst();
    assertThat(pod.getSpec().getRuntimeClassName()).isEqualTo("gvisor-nvproxy");
    assertThat(pod.getSpec().getNodeSelector()).isEqualTo(settings.gpuNodeSelector());
    assertThat(pod.getSpec().getTolerations())
        .anyMatch(t -> "nvidia.com/gpu".equals(t.getKey()) && "Exists".equals(t.getOperator()));
    assertThat(pod.getSpec().getContainers().getFirst().getResources().getLimits())
        .containsEntry("nvidia.com/gpu", new Quantity("1"));
  }

  @Test
  void whenTheLeaderStopsAnotherReplicaReconciles() throws Exception {
    KubernetesClient otherClient = mock.client();
    UdfWorkerReconciler other =
        new UdfWorkerReconciler(
            otherClient, KubernetesCaches.start(otherClient, settings), settings, "kiln-b");
    try {
      other.start();
      UdfWorker w = create("acme", "failover", s -> {});
      awaitPods(w, 2);
      await("status of 2 pods", WAIT, () -> status(w).getPods() == 2);
      assertThat(other.isLeader()).isFalse();
      assertThat(pods(w)).hasSize(2); // one reconciler made them, not two

      // The leader's process dies: its connections end, its lease is no longer renewed.
      leaderClient.close();
      await("kiln-b to lead", WAIT, other::isLeader);
      edit(w, s -> s.setReplicas(3));
      awaitPods(w, 3);
    } finally {
      other.close();
    }
  }

  private static Set<String> names(List<Pod> pods) {
    return pods.stream().map(p -> p.getMetadata().getName()).collect(Collectors.toSet());
  }
}
