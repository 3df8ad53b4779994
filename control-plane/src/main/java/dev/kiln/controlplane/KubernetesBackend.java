package dev.kiln.controlplane;

import dev.kiln.provisioner.kubernetes.KubernetesCaches;
import dev.kiln.provisioner.kubernetes.KubernetesProvisioner;
import dev.kiln.provisioner.kubernetes.KubernetesSettings;
import dev.kiln.provisioner.kubernetes.UdfWorkerReconciler;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.time.Duration;
import java.util.Deque;

/**
 * {@code kiln serve --kubernetes}, wired: one client of the cluster, the reconciler (it works while
 * this replica holds the lease), and the provisioner whose sandboxes are pods.
 */
final class KubernetesBackend {
  /** How long a new pod may take to be ready: pulling a large image included. */
  static final Duration POD_START = Duration.ofMinutes(5);

  private KubernetesBackend() {}

  /** The pod provisioner; what it needs is closed with {@code closeables}, in reverse. */
  static KubernetesProvisioner start(KilnConfig config, Deque<AutoCloseable> closeables)
      throws IOException {
    KubernetesClient client = KubernetesProvisioner.connect(config.kubeconfig());
    closeables.push(client);
    KubernetesSettings settings = settings(config);
    // One cache of the workers and one of the pods, for the reconciler and the provisioner.
    KubernetesCaches caches = KubernetesCaches.start(client, settings);
    closeables.push(caches);
    UdfWorkerReconciler reconciler = new UdfWorkerReconciler(client, caches, settings, identity());
    closeables.push(reconciler);
    reconciler.start();
    KubernetesProvisioner pods = new KubernetesProvisioner(client, caches, settings, POD_START);
    closeables.push(pods);
    return pods;
  }

  static KubernetesSettings settings(KilnConfig config) {
    return KubernetesSettings.defaults(config.kubernetesNamespace());
  }

  /** This replica's name in the lease: its pod's name ($KILN_POD_NAME), else host and process. */
  static String identity() {
    String pod = System.getenv("KILN_POD_NAME");
    if (pod != null && !pod.isBlank()) {
      return pod;
    }
    String host;
    try {
      host = InetAddress.getLocalHost().getHostName();
    } catch (UnknownHostException e) {
      host = "kiln";
    }
    return host + "-" + ProcessHandle.current().pid();
  }
}
