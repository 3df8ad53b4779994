package dev.kiln.provisioner.kubernetes;

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
    server =
        new KubernetesMockServer(
            new Context(),
            new MockWebServer(),
            new HashMap<>(),
            new KubernetesCrudDispatcher(List.of()),
            false);
    server.init();
    try (InputStream crd = Files.newInputStream(MANIFESTS.resolve("udfworker-crd.yaml"))) {
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

  @Override
  public synchronized void close() {
    clients.forEach(KubernetesClient::close);
    server.destroy();
  }
}
