package dev.kiln.controlplane;

import dev.kiln.provisioner.kubernetes.KubernetesCaches;
import dev.kiln.provisioner.kubernetes.KubernetesProvisioner;
import dev.kiln.provisioner.kubernetes.KubernetesSettings;
import dev.kiln.provisioner.kubernetes.ReplicaSecret;
import dev.kiln.provisioner.kubernetes.UdfWorkerReconciler;
import dev.kiln.worker.Tokens;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Deque;

/**
 * {@code kiln serve --kubernetes}, wired: one client of the cluster, the reconciler (it works while
 * this replica holds the lease), the provisioner whose sandboxes are pods, and what the replicas
 * share through the API server: the token secret and the definitions.
 *
 * @param pods the pod provisioner
 * @param tokens tokens signed with the secret every replica shares
 * @param definitions the definitions every replica reads
 */
record KubernetesBackend(KubernetesProvisioner pods, Tokens tokens, SharedDefinitions definitions) {
  /** How long a new pod may take to be ready: pulling a large image included. */
  static final Duration POD_START = Duration.ofMinutes(5);

  /** Starts it; what it needs is closed with {@code closeables}, in reverse. */
  static KubernetesBackend start(KilnConfig config, Deque<AutoCloseable> closeables)
      throws IOException {
    KubernetesClient client = KubernetesProvisioner.connect(config.kubeconfig());
    closeables.push(client);
    KubernetesSettings settings = settings(config);
    Tokens tokens = new Tokens(ReplicaSecret.loadOrCreate(client, settings.kilnNamespace(), 32));
    // One cache of the workers and one of the pods, for the reconciler and the provisioner.
    KubernetesCaches caches = KubernetesCaches.start(client, settings);
    closeables.push(caches);
    String replica = identity(config.dataDir());
    UdfWorkerReconciler reconciler = new UdfWorkerReconciler(client, caches, settings, replica);
    closeables.push(reconciler);
    reconciler.start();
    KubernetesProvisioner pods =
        new KubernetesProvisioner(client, caches, settings, POD_START, replica);
    closeables.push(pods);
    return new KubernetesBackend(pods, tokens, new ClusterDefinitions(pods));
  }

  static KubernetesSettings settings(KilnConfig config) {
    return KubernetesSettings.defaults(config.kubernetesNamespace());
  }

  /**
   * This replica's name in the lease and in its claims of pods: its pod's name ($KILN_POD_NAME),
   * else host, process and data directory (two servers of one process have two directories).
   */
  static String identity(Path dataDir) {
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
    String dir = Integer.toHexString(dataDir.toAbsolutePath().normalize().hashCode());
    return host + "-" + ProcessHandle.current().pid() + "-" + dir;
  }
}
