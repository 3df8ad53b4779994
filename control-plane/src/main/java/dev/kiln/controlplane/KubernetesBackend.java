package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import dev.kiln.egress.EgressCredentials;
import dev.kiln.egress.EgressProxy;
import dev.kiln.image.ImageHost;
import dev.kiln.image.Runtimes;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.kubernetes.ImageBuilds;
import dev.kiln.provisioner.kubernetes.ImagePods;
import dev.kiln.provisioner.kubernetes.KubernetesCaches;
import dev.kiln.provisioner.kubernetes.KubernetesProvisioner;
import dev.kiln.provisioner.kubernetes.KubernetesSettings;
import dev.kiln.provisioner.kubernetes.ReplicaLeases;
import dev.kiln.provisioner.kubernetes.ReplicaSecret;
import dev.kiln.provisioner.kubernetes.UdfWorkerReconciler;
import dev.kiln.provisioner.kubernetes.WorkerRecords;
import dev.kiln.worker.Tokens;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.InstantSource;
import java.util.Deque;
import java.util.List;
import org.slf4j.LoggerFactory;

/**
 * {@code kiln serve --kubernetes}, wired: one client of the cluster, the reconciler (it works while
 * this replica holds the lease), the provisioner whose sandboxes are pods, and what the replicas
 * share through the API server: the token secret, the definitions, Databend's workers, and who
 * builds each image.
 *
 * @param pods the pod provisioner
 * @param builds which replica builds each worker's image
 * @param tokens tokens signed with the secret every replica shares
 * @param definitions the definitions every replica reads
 * @param workers Databend's workers, which every replica reads and changes
 * @param probes pods that run a base's Python once, for the image builder
 * @param runnerPort the port of every sandbox pod's runner listener
 */
record KubernetesBackend(
    KubernetesProvisioner pods,
    ImageBuilds builds,
    Tokens tokens,
    SharedDefinitions definitions,
    Workers workers,
    ImagePods probes,
    int runnerPort,
    EgressCredentials egressCredentials) {
  /** How long a replica's hold on an image build lasts unrenewed (a dead builder's lapses). */
  static final Duration BUILD_HOLD = Duration.ofSeconds(30);

  /** How long a new pod may take to be ready: pulling a large image included. */
  static final Duration POD_START = Duration.ofMinutes(5);

  /** Starts it; what it needs is closed with {@code closeables}, in reverse. */
  static KubernetesBackend start(KilnConfig config, Deque<AutoCloseable> closeables)
      throws IOException {
    KubernetesClient client = KubernetesProvisioner.connect(config.kubeconfig());
    closeables.push(client);
    KubernetesSettings settings = settings(config);
    byte[] shared = ReplicaSecret.loadOrCreate(client, settings.kilnNamespace(), 32);
    Tokens tokens = new Tokens(shared);
    // One cache of the workers and one of the pods, for the reconciler and the provisioner.
    KubernetesCaches caches = KubernetesCaches.start(client, settings);
    closeables.push(caches);
    String replica = identity(config.dataDir());
    // This replica's own lease, renewed while it runs: the claims of one that crashed are taken
    // back. Closed after the provisioner, which gives this replica's claims back first.
    ReplicaLeases lease = new ReplicaLeases(client, settings, replica, InstantSource.system());
    closeables.push(lease);
    UdfWorkerReconciler reconciler = new UdfWorkerReconciler(client, caches, settings, replica);
    closeables.push(reconciler);
    reconciler.start();
    KubernetesProvisioner pods =
        new KubernetesProvisioner(client, caches, settings, POD_START, replica);
    closeables.push(pods);
    ImageBuilds builds =
        new ImageBuilds(client, caches, settings, replica, BUILD_HOLD, InstantSource.system());
    closeables.push(builds);
    WorkerRecords records = WorkerRecords.start(client, settings);
    closeables.push(records);
    ClusterWorkers workers = new ClusterWorkers(records);
    // Workers this data directory kept as a single server's join the cluster's.
    workers.adopt(config.dataDir().resolve(FileWorkers.FILE));
    return new KubernetesBackend(
        pods,
        builds,
        tokens,
        new ClusterDefinitions(pods),
        workers,
        new ImagePods(client, settings),
        settings.runnerPort(),
        EgressCredentials.fromSharedSecret(shared));
  }

  /**
   * The variables that send a pod's HTTP(S) through the egress proxy Deployment as {@code client}:
   * credentials signed with the replicas' shared secret, and the proxy Service's address.
   *
   * @throws KilnException {@link ErrorCode#SANDBOX_UNAVAILABLE} when the proxy is not deployed
   */
  List<String> egressEnvironment(EgressProxy.Client client) throws KilnException {
    String address;
    try {
      address = pods.egressProxyAddress();
    } catch (IOException e) {
      throw new KilnException(ErrorCode.SANDBOX_UNAVAILABLE, e.getMessage(), e);
    }
    return EgressProxy.environment(EgressProxy.proxyUrl(address, egressCredentials.issue(client)));
  }

  /**
   * Where the image builder runs a base's Python: a pod of its image, pushed through {@code
   * registry}; byte code is compiled in {@code local} sandboxes, not at all when this process
   * cannot run gVisor (null).
   */
  ImageHost imageHost(
      Runtimes.Runtime runtime, ModuleSteps.ImageRegistry registry, PlaceSandbox local) {
    ImageHost byteCode = local == null ? null : SandboxRunners.host(local);
    if (byteCode == null) {
      LoggerFactory.getLogger(KubernetesBackend.class)
          .info(
              "this Kiln cannot run gVisor itself (no runsc, or not root): a base's Python is"
                  + " probed in a pod, and no byte code is compiled (UDFs import packages from"
                  + " source)");
    }
    return new PodImageHost(
        probes,
        image -> {
          try {
            return registry.push(image, image.name(), runtime);
          } catch (dev.kiln.base.KilnException e) {
            throw new IOException(e.getMessage(), e);
          }
        },
        byteCode);
  }

  /**
   * How many pods of the tenant's UDF {@code key} other replicas hold sandboxes on: its worker is
   * not idle while there are any, and they count towards its {@code max_cluster_count}.
   */
  int podsElsewhere(Tenant tenant, ContentKey key) {
    return pods.claimedElsewhere(tenant.name(), ClusterDefinitions.workerOf(key));
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
