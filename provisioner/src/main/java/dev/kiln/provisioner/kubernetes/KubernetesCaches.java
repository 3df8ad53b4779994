package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import java.util.List;
import java.util.Map;

/**
 * A replica's caches of the cluster, filled once and shared by its reconciler and its pod
 * provisioner: the {@link UdfWorker} resources in Kiln's namespace, and the sandbox pods of every
 * tenant namespace, indexed by their worker. One cache of each, not one per user: with 10,000
 * workers a cache holds tens of MiB.
 */
public final class KubernetesCaches implements AutoCloseable {
  /** Every cached object is handed to the handlers again this often (a missed event heals). */
  static final long RESYNC_MILLIS = 30_000;

  /** The index of {@link #pods} by the worker label. */
  static final String BY_WORKER = "worker";

  final SharedIndexInformer<UdfWorker> workers;
  final SharedIndexInformer<Pod> pods;
  private final String kilnNamespace;

  private KubernetesCaches(
      SharedIndexInformer<UdfWorker> workers, SharedIndexInformer<Pod> pods, String kilnNamespace) {
    this.workers = workers;
    this.pods = pods;
    this.kilnNamespace = kilnNamespace;
  }

  /** Starts watching; returns once both caches are filled. */
  public static KubernetesCaches start(KubernetesClient client, KubernetesSettings settings) {
    SharedIndexInformer<UdfWorker> workers =
        client
            .resources(UdfWorker.class)
            .inNamespace(settings.kilnNamespace())
            .runnableInformer(RESYNC_MILLIS);
    SharedIndexInformer<Pod> pods =
        client
            .pods()
            .inAnyNamespace()
            .withLabel(KubernetesNames.MANAGED_BY, "kiln")
            .withLabel(KubernetesNames.COMPONENT, KubernetesNames.SANDBOX)
            .runnableInformer(RESYNC_MILLIS);
    pods.addIndexers(Map.of(BY_WORKER, p -> List.of(workerOf(p))));
    workers.run();
    pods.run();
    return new KubernetesCaches(workers, pods, settings.kilnNamespace());
  }

  /** The worker a sandbox pod belongs to (its label). */
  static String workerOf(Pod p) {
    return p.getMetadata().getLabels().getOrDefault(KubernetesNames.WORKER, "");
  }

  /** A worker by name, as last seen; null when there is none. */
  UdfWorker worker(String name) {
    return workers.getIndexer().getByKey(kilnNamespace + "/" + name);
  }

  /** Every worker, as last seen. */
  List<UdfWorker> workers() {
    return workers.getStore().list();
  }

  /** The sandbox pods of a worker, as last seen. */
  List<Pod> podsOf(String worker) {
    return pods.getIndexer().byIndex(BY_WORKER, worker);
  }

  /** {@code namespace/name}: how the caches key a pod. */
  static String id(Pod p) {
    return p.getMetadata().getNamespace() + "/" + p.getMetadata().getName();
  }

  @Override
  public void close() {
    workers.close();
    pods.close();
  }
}
