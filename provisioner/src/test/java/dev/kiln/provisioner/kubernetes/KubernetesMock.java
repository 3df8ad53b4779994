package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodCondition;
import io.fabric8.kubernetes.api.model.PodStatus;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.server.mock.KubernetesCrudDispatcher;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.mockwebserver.Context;
import io.fabric8.mockwebserver.MockWebServer;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.function.BooleanSupplier;

/**
 * The one fake in Kiln's tests: fabric8's mock Kubernetes API server in CRUD mode (it stores what
 * clients create and serves lists, watches, patches and the status subresource), because no real
 * API server can be installed on these machines. It knows the UdfWorker CRD of {@code
 * deploy/kubernetes/}. No kubelet runs: tests set pod status themselves where one would.
 */
public final class KubernetesMock implements AutoCloseable {
  /** The manifests, from a module's working directory. */
  public static final Path MANIFESTS = Path.of("..", "deploy", "kubernetes");

  private final KubernetesMockServer server;
  private final List<KubernetesClient> clients = new ArrayList<>();

  public KubernetesMock() throws IOException {
    this(MANIFESTS);
  }

  /** A mock that knows the CRD of the manifests in {@code manifests}. */
  public KubernetesMock(Path manifests) throws IOException {
    server =
        new KubernetesMockServer(
            new Context(),
            new MockWebServer(),
            new HashMap<>(),
            new KubernetesCrudDispatcher(List.of()),
            false);
    server.init();
    try (InputStream crd = Files.newInputStream(manifests.resolve("udfworker-crd.yaml"))) {
      client().load(crd).create();
    }
  }

  /** A new client of the mock, as another Kiln replica would have; closed with the mock. */
  public synchronized KubernetesClient client() {
    KubernetesClient c = server.createClient();
    clients.add(c);
    return c;
  }

  /** A kubeconfig file for the mock (plain http, any token), as a Kiln server is given one. */
  public Path kubeconfig(Path dir) throws IOException {
    String url = client().getMasterUrl().toString();
    return Files.writeString(
        dir.resolve("kubeconfig"),
        """
        apiVersion: v1
        kind: Config
        clusters:
          - name: mock
            cluster: {server: "%s", insecure-skip-tls-verify: true}
        users:
          - name: kiln
            user: {token: mock}
        contexts:
          - name: mock
            context: {cluster: mock, user: kiln, namespace: kiln}
        current-context: mock
        """
            .formatted(url.endsWith("/") ? url.substring(0, url.length() - 1) : url));
  }

  /**
   * Writes a pod's status as a kubelet would: {@code Running} and Ready at {@code ip}, or ended in
   * {@code Failed} when {@code ip} is null.
   */
  public static void setPodStatus(KubernetesClient client, Pod pod, String ip) {
    PodStatus s = new PodStatus();
    if (ip == null) {
      s.setPhase("Failed");
    } else {
      s.setPhase("Running");
      s.setPodIP(ip);
      PodCondition ready = new PodCondition();
      ready.setType("Ready");
      ready.setStatus("True");
      s.setConditions(List.of(ready));
    }
    client
        .pods()
        .inNamespace(pod.getMetadata().getNamespace())
        .withName(pod.getMetadata().getName())
        .editStatus(
            cur -> {
              cur.setStatus(s);
              return cur;
            });
  }

  /**
   * The egress proxy's Service in Kiln's namespace {@code namespace}, with {@code clusterIp} (what
   * {@code deploy/kubernetes/egress.yaml} makes, and the cluster would give an address).
   */
  public static void egressService(KubernetesClient client, String namespace, String clusterIp) {
    client
        .services()
        .inNamespace(namespace)
        .resource(
            new io.fabric8.kubernetes.api.model.ServiceBuilder()
                .withNewMetadata()
                .withName(SandboxPods.EGRESS_PROXY)
                .withNamespace(namespace)
                .endMetadata()
                .withNewSpec()
                .withClusterIP(clusterIp)
                .addNewPort()
                .withPort(SandboxPods.EGRESS_PROXY_PORT)
                .endPort()
                .endSpec()
                .build())
        .create();
  }

  /** The {@link UdfWorker} of {@code tenant}'s {@code udf} in namespace {@code kiln}, or null. */
  public static UdfWorker worker(KubernetesClient client, String tenant, String udf) {
    return client
        .resources(UdfWorker.class)
        .inNamespace("kiln")
        .withName(KubernetesNames.workerName(tenant, udf))
        .get();
  }

  /** Polls {@code condition} until it holds; fails after {@code timeout}. */
  public static void await(String what, Duration timeout, BooleanSupplier condition)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (!condition.getAsBoolean()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("timed out after " + timeout + " waiting for " + what);
      }
      Thread.sleep(20);
    }
  }

  /**
   * Stops the server, then its clients. In this order: the mock writes a watch event to a client
   * that closed its watch by blocking its only thread for 30 s.
   */
  @Override
  public synchronized void close() {
    try {
      server.destroy();
    } catch (IllegalStateException e) {
      // The mock could not stop within its 10 s (its thread still blocked on such a write): the
      // fake's own shutdown, not what a test checks.
      System.err.println("the mock API server did not stop cleanly: " + e.getMessage());
    }
    clients.forEach(KubernetesClient::close);
  }
}
