package dev.kiln.provisioner.kubernetes;

import dev.kiln.provisioner.Provisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxSpec;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.math.BigDecimal;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sandboxes as Kubernetes pods: {@link #start} asks the {@link UdfWorker} of the sandbox's owner
 * (tenant) and name for one pod more and returns the first ready pod no other sandbox holds, as a
 * {@link PodSandbox} whose runners are reached over TCP. The pods are made by the {@link
 * UdfWorkerReconciler} of whichever Kiln replica holds the lease, from the image's registry
 * reference and argv (the runner listener); the sandbox's variables become the pod's. Closing a
 * sandbox marks its pod released and asks for one fewer (the reconciler removes released pods
 * first); the worker goes with the last.
 *
 * <p>What is not here yet: several Kiln replicas sharing one worker (each asks for its own count).
 */
public final class KubernetesProvisioner implements Provisioner {
  private static final Logger log = LoggerFactory.getLogger(KubernetesProvisioner.class);

  private final KubernetesClient client;
  private final KubernetesSettings settings;
  private final Duration startTimeout;
  private final KubernetesCaches caches;
  private final ResourceEventHandler<Pod> podEvents = podEvents();
  private final Object changed = new Object();

  /** Sandboxes by their pod ({@code namespace/name}). */
  private final Map<String, PodSandbox> live = new ConcurrentHashMap<>();

  /** Worker name -> pods wanted (held and starting). Guarded by this. */
  private final Map<String, Integer> wanted = new HashMap<>();

  private volatile boolean closed;

  /**
   * @param client the API server
   * @param caches the replica's caches, shared with its reconciler
   * @param settings how sandbox pods run (the reconciler's)
   * @param startTimeout how long a new pod may take to be ready (pulling its image included)
   */
  public KubernetesProvisioner(
      KubernetesClient client,
      KubernetesCaches caches,
      KubernetesSettings settings,
      Duration startTimeout) {
    this.client = client;
    this.settings = settings;
    this.startTimeout = startTimeout;
    this.caches = caches;
    caches.pods.addEventHandler(podEvents);
  }

  /**
   * A client of the cluster: from {@code kubeconfig} when given, else found as kubectl finds it (in
   * a pod, its service account; else {@code KUBECONFIG} or {@code ~/.kube/config}).
   */
  public static KubernetesClient connect(Path kubeconfig) throws IOException {
    Config config =
        kubeconfig == null
            ? Config.autoConfigure(null)
            : Config.fromKubeconfig(Files.readString(kubeconfig));
    return new KubernetesClientBuilder().withConfig(config).build();
  }

  /** A pod changed: its sandbox, if any, may be lost; starts waiting for a pod look again. */
  private ResourceEventHandler<Pod> podEvents() {
    return new ResourceEventHandler<>() {
      @Override
      public void onAdd(Pod p) {
        changed(p, false);
      }

      @Override
      public void onUpdate(Pod oldPod, Pod p) {
        changed(p, false);
      }

      @Override
      public void onDelete(Pod p, boolean finalStateUnknown) {
        changed(p, true);
      }
    };
  }

  private void changed(Pod p, boolean deleted) {
    PodSandbox s = live.get(KubernetesCaches.id(p));
    if (s != null
        && (deleted || p.getMetadata().getDeletionTimestamp() != null || SandboxPods.hasEnded(p))
        && live.remove(s.id(), s)) {
      log.warn("pod {} of UDF worker {} is gone", s.id(), s.worker());
      s.lost();
      // Not on the informer's thread: asking the API server takes a round trip.
      Thread.ofVirtual().start(() -> lower(s.worker()));
    }
    synchronized (changed) {
      changed.notifyAll();
    }
  }

  @Override
  public Sandbox start(SandboxSpec spec) throws IOException, InterruptedException {
    if (closed) {
      throw new IOException("the Kubernetes provisioner is closed");
    }
    if (spec.image().reference() == null) {
      throw new IOException(
          "a Kubernetes pod pulls its image from a registry, and this one is only local: run kiln"
              + " serve with --registry");
    }
    if (spec.owner() == null || spec.owner().isEmpty()) {
      throw new IllegalArgumentException("a sandbox pod needs an owner (its tenant's namespace)");
    }
    String worker = KubernetesNames.workerName(spec.owner(), spec.name());
    int want;
    synchronized (this) {
      want = wanted.merge(worker, 1, Integer::sum);
    }
    try {
      apply(worker, spec, want);
      long deadline = System.nanoTime() + startTimeout.toNanos();
      synchronized (changed) {
        while (true) {
          PodSandbox s = claim(worker, spec);
          if (s != null) {
            log.info("UDF worker {}: sandbox pod {} at {}", worker, s.id(), endpoint(s));
            return s;
          }
          long left = deadline - System.nanoTime();
          if (closed || left <= 0) {
            UdfWorker w = caches.worker(worker);
            String why =
                w == null || w.getStatus() == null ? "" : ": " + w.getStatus().getMessage();
            throw new IOException(
                "no new pod of UDF worker "
                    + worker
                    + " became ready within "
                    + startTimeout.toSeconds()
                    + " s"
                    + why
                    + "; check the pods in namespace "
                    + KubernetesNames.tenantNamespace(spec.owner())
                    + " (kubectl describe pods)");
          }
          changed.wait(Math.max(1, Math.min(left / 1_000_000, 1000)));
        }
      }
    } catch (IOException | InterruptedException | RuntimeException e) {
      lower(worker);
      throw e;
    }
  }

  /**
   * A ready pod of the worker that no sandbox holds and that is not released, taken for a new
   * sandbox; null when none.
   */
  private PodSandbox claim(String worker, SandboxSpec spec) {
    for (Pod p : caches.podsOf(worker)) {
      if (SandboxPods.isReady(p)
          && p.getMetadata().getDeletionTimestamp() == null
          && !p.getMetadata().getLabels().containsKey(KubernetesNames.RELEASED)
          && !live.containsKey(KubernetesCaches.id(p))) {
        PodSandbox s =
            new PodSandbox(
                p.getMetadata().getName(),
                p.getMetadata().getNamespace(),
                worker,
                spec,
                new InetSocketAddress(p.getStatus().getPodIP(), settings.runnerPort()),
                this);
        live.put(s.id(), s);
        return s;
      }
    }
    return null;
  }

  private static String endpoint(PodSandbox s) {
    InetSocketAddress a = s.runnerEndpoint().orElseThrow();
    return a.getHostString() + ":" + a.getPort();
  }

  /** The worker's resource as {@code spec} and {@code pods} say: made, or its spec replaced. */
  private void apply(String worker, SandboxSpec spec, int pods) {
    UdfWorkerSpec s = new UdfWorkerSpec();
    s.setTenant(spec.owner());
    s.setUdf(spec.name());
    s.setKey(spec.name());
    s.setImage(spec.image().reference());
    s.setCommand(spec.image().argv());
    Map<String, String> env = new TreeMap<>();
    for (String kv : spec.extraEnv()) {
      int eq = kv.indexOf('=');
      env.put(kv.substring(0, eq), kv.substring(eq + 1));
    }
    s.setEnv(env);
    s.setCpu(BigDecimal.valueOf(spec.limits().cpus()).stripTrailingZeros().toPlainString());
    s.setMemory(Long.toString(spec.limits().memoryBytes()));
    s.setGpu(spec.limits().gpus());
    s.setReplicas(pods);
    s.setMinReplicas(0);
    s.setMaxReplicas(pods);
    if (caches.worker(worker) == null) {
      UdfWorker w = new UdfWorker();
      w.getMetadata().setName(worker);
      w.getMetadata().setNamespace(settings.kilnNamespace());
      w.setSpec(s);
      w.setStatus(null);
      try {
        client.resource(w).create();
        return;
      } catch (KubernetesClientException e) {
        if (e.getCode() != 409) {
          throw e;
        }
        // made meanwhile: replace its spec below
      }
    }
    UdfWorker.replaceSpec(client, settings.kilnNamespace(), worker, s);
  }

  /** One pod fewer for the worker; its resource goes with the last. */
  private void lower(String worker) {
    int left;
    synchronized (this) {
      left = wanted.merge(worker, -1, Integer::sum);
      if (left <= 0) {
        wanted.remove(worker);
      }
    }
    try {
      var resource =
          client.resources(UdfWorker.class).inNamespace(settings.kilnNamespace()).withName(worker);
      if (left <= 0) {
        resource.delete();
        return;
      }
      resource.patch(
          PatchContext.of(PatchType.JSON),
          Serialization.asJson(
              List.of(
                  Map.of("op", "replace", "path", "/spec/replicas", "value", left),
                  Map.of("op", "replace", "path", "/spec/maxReplicas", "value", left))));
    } catch (KubernetesClientException e) {
      log.warn("UDF worker {}: asking for {} pods failed: {}", worker, left, e.getMessage());
    }
  }

  /**
   * A sandbox closed: its pod is marked released, then the worker asks for one fewer, and the
   * reconciler removes released pods first. (Deleting the pod before asking for fewer would make
   * the reconciler start a replacement in between.)
   */
  void release(PodSandbox s) {
    live.remove(s.id(), s);
    try {
      client
          .pods()
          .inNamespace(s.namespace())
          .withName(s.podName())
          .patch(
              PatchContext.of(PatchType.JSON_MERGE),
              Serialization.asJson(
                  Map.of("metadata", Map.of("labels", Map.of(KubernetesNames.RELEASED, "true")))));
    } catch (KubernetesClientException e) {
      log.warn("marking pod {} released failed: {}", s.id(), e.getMessage());
    }
    lower(s.worker());
  }

  @Override
  public List<Sandbox> sandboxes() {
    return List.copyOf(live.values());
  }

  /**
   * Stops watching. The pods stay: the workers are the cluster's desired state, which the next Kiln
   * (or another replica) takes up.
   */
  @Override
  public void close() {
    closed = true;
    synchronized (changed) {
      changed.notifyAll();
    }
    caches.pods.removeEventHandler(podEvents);
  }
}
