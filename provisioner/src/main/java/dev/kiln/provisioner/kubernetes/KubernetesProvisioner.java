package dev.kiln.provisioner.kubernetes;

import dev.kiln.provisioner.Provisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxSpec;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.Config;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.Resource;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import java.io.IOException;
import java.math.BigDecimal;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sandboxes as Kubernetes pods: {@link #start} claims one pod more of the {@link UdfWorker} of the
 * sandbox's owner (tenant) and name, and returns a ready pod, as a {@link PodSandbox} whose runners
 * are reached over TCP. The pods are made by the {@link UdfWorkerReconciler} of whichever Kiln
 * replica holds the lease, from the image's registry reference and argv (the runner listener); the
 * sandbox's variables become the pod's.
 *
 * <p>Several replicas share a worker. Each writes only its own entry of the worker's {@link
 * UdfWorkerSpec#getClaims claims} (a merge patch of one key), and the worker keeps as many pods as
 * all claims together. A replica marks the pods it holds sandboxes on with its own annotation
 * ({@link KubernetesNames#holder}): a new sandbox takes a ready pod no replica holds; a replica's
 * first sandbox of a worker shares the least-held ready pod when no free one is ready, so that a
 * replica that did not provision a UDF serves it at once. Closing a sandbox removes the replica's
 * annotation and lowers its claim; the reconciler removes pods nobody holds first. The worker stays
 * (without claims, without pods) with the control plane's record of its definition ({@link
 * #declare}), which any replica reads back ({@link #record}).
 */
public final class KubernetesProvisioner implements Provisioner {
  private static final Logger log = LoggerFactory.getLogger(KubernetesProvisioner.class);

  /**
   * The most pods of one worker a replica's claims can make, summed over replicas (each replica's
   * scaler keeps its own claim within the worker's {@code max_cluster_count}).
   */
  static final int MAX_PODS = 100;

  private final KubernetesClient client;
  private final KubernetesSettings settings;
  private final Duration startTimeout;
  private final KubernetesCaches caches;
  private final String replica;
  private final ResourceEventHandler<Pod> podEvents = podEvents();
  private final Object changed = new Object();

  /** Sandboxes by their pod ({@code namespace/name}). */
  private final Map<String, PodSandbox> live = new ConcurrentHashMap<>();

  /** Worker name -> pods this replica claims (held and starting). Guarded by this. */
  private final Map<String, Integer> wanted = new HashMap<>();

  private volatile boolean closed;

  /**
   * @param client the API server
   * @param caches the replica's caches, shared with its reconciler
   * @param settings how sandbox pods run (the reconciler's)
   * @param startTimeout how long a new pod may take to be ready (pulling its image included)
   * @param replica this Kiln replica's name (its pod's), under which it claims pods
   */
  public KubernetesProvisioner(
      KubernetesClient client,
      KubernetesCaches caches,
      KubernetesSettings settings,
      Duration startTimeout,
      String replica) {
    this.client = client;
    this.settings = settings;
    this.startTimeout = startTimeout;
    this.caches = caches;
    this.replica = Objects.requireNonNull(replica, "replica");
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
      s.lost();
      if (!s.loseWhileStarting()) {
        log.warn("pod {} of UDF worker {} is gone", s.id(), s.worker());
        // Not on the informer's thread: asking the API server takes a round trip.
        Thread.ofVirtual().start(() -> lower(s.worker()));
      }
      // else: a start was taking it; that start keeps its claim and takes another pod.
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
      Set<String> refused = new HashSet<>();
      while (true) {
        PodSandbox s = awaitPod(worker, spec, refused);
        // Marked outside the lock: pod events wait on it, and this is a round trip.
        Pod marked = hold(s, true);
        if (marked != null
            && marked.getMetadata().getDeletionTimestamp() == null
            && !KubernetesNames.isCondemned(marked)
            && s.finishStarting()) {
          log.info("UDF worker {}: sandbox pod {} at {}", worker, s.id(), endpoint(s));
          return s;
        }
        // The reconciler chose this pod for removal before the mark: another one (the claim
        // raised above makes the reconciler start one if none is free).
        live.remove(s.id(), s);
        refused.add(s.id());
        if (marked != null) {
          hold(s, false);
        }
        log.info("UDF worker {}: pod {} is being removed; waiting for another", worker, s.id());
      }
    } catch (IOException | InterruptedException | RuntimeException e) {
      lower(worker);
      throw e;
    }
  }

  /** A ready pod of the worker claimed for a new sandbox, waited for up to the start timeout. */
  private PodSandbox awaitPod(String worker, SandboxSpec spec, Set<String> refused)
      throws IOException, InterruptedException {
    long deadline = System.nanoTime() + startTimeout.toNanos();
    synchronized (changed) {
      while (true) {
        PodSandbox s = claim(worker, spec, refused);
        if (s != null) {
          return s;
        }
        long left = deadline - System.nanoTime();
        if (closed || left <= 0) {
          UdfWorker w = caches.worker(worker);
          String why = w == null || w.getStatus() == null ? "" : ": " + w.getStatus().getMessage();
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
  }

  /**
   * A ready pod of the worker for a new sandbox: one no replica holds; else, when this replica
   * holds none of the worker's pods yet, the ready pod the fewest replicas hold; null when neither.
   */
  private PodSandbox claim(String worker, SandboxSpec spec, Set<String> refused) {
    Pod free = null;
    Pod shared = null;
    for (Pod p : caches.podsOf(worker)) {
      if (!SandboxPods.isReady(p)
          || p.getMetadata().getDeletionTimestamp() != null
          || KubernetesNames.isCondemned(p)
          || refused.contains(KubernetesCaches.id(p))
          || live.containsKey(KubernetesCaches.id(p))) {
        continue;
      }
      if (!KubernetesNames.isHeld(p)) {
        free = p;
        break;
      }
      if (shared == null || KubernetesNames.holders(p) < KubernetesNames.holders(shared)) {
        shared = p;
      }
    }
    Pod p = free != null ? free : holdsAny(worker) ? null : shared;
    if (p == null) {
      return null;
    }
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

  private boolean holdsAny(String worker) {
    return live.values().stream().anyMatch(s -> s.worker().equals(worker));
  }

  private static String endpoint(PodSandbox s) {
    InetSocketAddress a = s.runnerEndpoint().orElseThrow();
    return a.getHostString() + ":" + a.getPort();
  }

  /**
   * Puts this replica's annotation on the sandbox's pod, or takes it off; returns the pod as the
   * API server answered (null when it is gone or the write failed).
   */
  private Pod hold(PodSandbox s, boolean held) {
    String key = KubernetesNames.holder(replica);
    var pod = client.pods().inNamespace(s.namespace()).withName(s.podName());
    try {
      if (held) {
        return JsonPatch.annotate(pod, key, replica);
      }
      JsonPatch.apply(pod, List.of(JsonPatch.remove(JsonPatch.annotation(key))));
      return null;
    } catch (KubernetesClientException e) {
      if (held || e.getCode() != 404) {
        log.warn(
            "marking pod {} {} by {} failed: {}",
            s.id(),
            held ? "held" : "no longer held",
            replica,
            e.getMessage());
      }
      return null;
    }
  }

  /**
   * The worker's resource as {@code spec} says, with this replica's claim at {@code pods}: made, or
   * its sandbox fields replaced (never the other replicas' claims, nor the definition).
   */
  private void apply(String worker, SandboxSpec spec, int pods) {
    UdfWorker cached = caches.worker(worker);
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
    if (!env.isEmpty()) {
      // The UDF's variables may hold credentials: a Secret, never the resource's spec. Written
      // once per version (a worker showing this version has the Secret already).
      s.setEnvSecret(SandboxPods.envSecretName(worker));
      s.setEnvVersion(KubernetesNames.hash(env.toString()));
      if (cached == null || !s.getEnvVersion().equals(cached.getSpec().getEnvVersion())) {
        writeEnv(worker, spec.owner(), env);
      }
    }
    s.setCpu(BigDecimal.valueOf(spec.limits().cpus()).stripTrailingZeros().toPlainString());
    s.setMemory(Long.toString(spec.limits().memoryBytes()));
    s.setGpu(spec.limits().gpus());
    s.setEgress(spec.egress());
    if (cached == null) {
      s.setClaims(new TreeMap<>(Map.of(replica, pods)));
      if (Conflicts.won(() -> create(worker, s))) {
        return;
      }
      // made meanwhile: set the fields below
    } else if (runsAs(cached.getSpec(), s)) {
      setClaim(worker, pods); // a pod more of what it runs already: the claim is all that changes
      return;
    }
    List<Map<String, Object>> ops = new ArrayList<>();
    ops.add(add("tenant", s.getTenant()));
    ops.add(add("udf", s.getUdf()));
    ops.add(add("key", s.getKey()));
    ops.add(add("image", s.getImage()));
    ops.add(add("command", s.getCommand()));
    ops.add(add("env", s.getEnv()));
    ops.add(add("envSecret", s.getEnvSecret() == null ? "" : s.getEnvSecret()));
    ops.add(add("envVersion", s.getEnvVersion() == null ? "" : s.getEnvVersion()));
    ops.add(add("cpu", s.getCpu()));
    ops.add(add("memory", s.getMemory()));
    ops.add(add("gpu", s.getGpu()));
    ops.add(add("egress", s.isEgress()));
    JsonPatch.apply(workerResource(worker), ops);
    setClaim(worker, pods);
  }

  /**
   * Writes the Secret of the worker's UDF variables in the tenant's namespace (made first when
   * missing; the reconciler adds its network policy before any pod). Kiln may create and replace
   * secrets there, never read them.
   */
  private void writeEnv(String worker, String tenant, Map<String, String> env) {
    Conflicts.won(() -> client.namespaces().resource(SandboxPods.namespace(tenant)).create());
    var secret = client.secrets().resource(SandboxPods.envSecret(worker, tenant, env));
    if (!Conflicts.won(secret::create)) {
      secret.update(); // no resource version: replaced as it is, unread
    }
  }

  /** Whether pods of {@code a} and of {@code b} are the same (claims and record aside). */
  private static boolean runsAs(UdfWorkerSpec a, UdfWorkerSpec b) {
    return Objects.equals(a.getTenant(), b.getTenant())
        && Objects.equals(a.getUdf(), b.getUdf())
        && Objects.equals(a.getKey(), b.getKey())
        && Objects.equals(a.getImage(), b.getImage())
        && Objects.equals(a.getCommand(), b.getCommand())
        && Objects.equals(a.getEnv(), b.getEnv())
        && Objects.toString(a.getEnvSecret(), "").equals(Objects.toString(b.getEnvSecret(), ""))
        && Objects.toString(a.getEnvVersion(), "").equals(Objects.toString(b.getEnvVersion(), ""))
        && Objects.equals(a.getCpu(), b.getCpu())
        && Objects.equals(a.getMemory(), b.getMemory())
        && a.getGpu() == b.getGpu()
        && a.isEgress() == b.isEgress();
  }

  private static Map<String, Object> add(String field, Object value) {
    return JsonPatch.add("/spec/" + field, value);
  }

  /** Makes the worker; claims go to the spec's, between no pods and {@link #MAX_PODS}. */
  private void create(String worker, UdfWorkerSpec s) {
    client.resource(newWorker(settings.kilnNamespace(), worker, s)).create();
  }

  /** A worker as Kiln makes it: pods only as replicas claim them, at most {@link #MAX_PODS}. */
  static UdfWorker newWorker(String namespace, String worker, UdfWorkerSpec s) {
    s.setReplicas(0);
    s.setMinReplicas(0);
    s.setMaxReplicas(MAX_PODS);
    UdfWorker w = new UdfWorker();
    w.getMetadata().setName(worker);
    w.getMetadata().setNamespace(namespace);
    w.setSpec(s);
    w.setStatus(null);
    return w;
  }

  private Resource<UdfWorker> workerResource(String worker) {
    return client.resources(UdfWorker.class).inNamespace(settings.kilnNamespace()).withName(worker);
  }

  /** This replica's claim on the worker: {@code pods}, or no entry when none. */
  private void setClaim(String worker, int pods) {
    if (pods > 0) {
      JsonPatch.merge(
          workerResource(worker), Map.of("spec", Map.of("claims", Map.of(replica, pods))));
    } else {
      JsonPatch.apply(workerResource(worker), List.of(JsonPatch.remove(JsonPatch.claim(replica))));
    }
  }

  /** This replica claims one pod fewer of the worker. */
  private void lower(String worker) {
    int left;
    synchronized (this) {
      left = wanted.merge(worker, -1, Integer::sum);
      if (left <= 0) {
        wanted.remove(worker);
      }
    }
    try {
      setClaim(worker, left);
    } catch (KubernetesClientException e) {
      // 404: the worker is gone; 422: it has no claim of this replica (made by hand, or lost).
      if (e.getCode() != 404 && e.getCode() != 422) {
        log.warn("UDF worker {}: claiming {} pods failed: {}", worker, left, e.getMessage());
      }
    }
  }

  // ------------------------------------------------------------------ the control plane's record

  /**
   * Keeps {@code record} (opaque here: the control plane's record of what the sandboxes of {@code
   * owner}'s {@code name} run) in the worker, making the worker when there is none: before a token
   * for it goes out, so that any replica can serve the calls that follow. A record already there is
   * kept.
   *
   * @throws IOException when the API server refuses
   */
  public void declare(String owner, String name, String record) throws IOException {
    String worker = KubernetesNames.workerName(owner, name);
    UdfWorker cached = caches.worker(worker);
    if (cached != null && cached.getSpec().getDefinition() != null) {
      return;
    }
    try {
      if (cached == null) {
        UdfWorkerSpec s = new UdfWorkerSpec();
        s.setTenant(owner);
        s.setUdf(name);
        s.setKey(name);
        s.setDefinition(record);
        if (Conflicts.won(() -> create(worker, s))) {
          return;
        }
      }
      JsonPatch.merge(workerResource(worker), Map.of("spec", Map.of("definition", record)));
    } catch (KubernetesClientException e) {
      throw new IOException(
          "cannot keep the definition of UDF worker " + worker + ": " + e.getMessage(), e);
    }
  }

  /**
   * The record kept for {@code owner}'s {@code name}: from the cache, else (a worker made a moment
   * ago by another replica) from the API server; empty when there is none.
   */
  public Optional<String> record(String owner, String name) {
    String worker = KubernetesNames.workerName(owner, name);
    UdfWorker w = caches.worker(worker);
    if (w == null || w.getSpec().getDefinition() == null) {
      try {
        w = workerResource(worker).get();
      } catch (KubernetesClientException e) {
        log.warn("reading UDF worker {} failed: {}", worker, e.getMessage());
        return Optional.empty();
      }
    }
    return w == null ? Optional.empty() : Optional.ofNullable(w.getSpec().getDefinition());
  }

  /** The records kept for {@code owner}'s workers, by name, as last seen. */
  public Map<String, String> records(String owner) {
    Map<String, String> out = new TreeMap<>();
    for (UdfWorker w : caches.workers()) {
      if (owner.equals(w.getSpec().getTenant()) && w.getSpec().getDefinition() != null) {
        out.put(w.getSpec().getUdf(), w.getSpec().getDefinition());
      }
    }
    return out;
  }

  /**
   * The pods other Kiln replicas claim of {@code owner}'s {@code name}, as last seen: they serve
   * calls there, so the worker is not idle although this replica has none, and its {@code
   * max_cluster_count} counts them.
   */
  public int claimedElsewhere(String owner, String name) {
    UdfWorker w = caches.worker(KubernetesNames.workerName(owner, name));
    if (w == null) {
      return 0;
    }
    Integer mine = w.getSpec().getClaims().get(replica);
    return w.getSpec().claimedPods() - (mine == null ? 0 : Math.max(0, mine));
  }

  /** Deletes {@code owner}'s worker {@code name}, its record, its variables and its pods. */
  public void forget(String owner, String name) {
    String worker = KubernetesNames.workerName(owner, name);
    try {
      workerResource(worker).delete();
      client
          .secrets()
          .inNamespace(KubernetesNames.tenantNamespace(owner))
          .withName(SandboxPods.envSecretName(worker))
          .delete();
    } catch (KubernetesClientException e) {
      log.warn("deleting UDF worker {} failed: {}", worker, e.getMessage());
    }
  }

  /**
   * Where sandbox pods reach the egress proxy: its Service's cluster address and port, {@code
   * http://kiln:CREDENTIAL@} before it. An address, not a name: the pods have no DNS.
   *
   * @throws IOException when the Service is missing (the egress proxy is not deployed) or has no
   *     cluster address
   */
  public String egressProxyAddress() throws IOException {
    io.fabric8.kubernetes.api.model.Service svc =
        client
            .services()
            .inNamespace(settings.kilnNamespace())
            .withName(SandboxPods.EGRESS_PROXY)
            .get();
    String ip = svc == null ? null : svc.getSpec().getClusterIP();
    if (ip == null || ip.isBlank() || ip.equalsIgnoreCase("None")) {
      throw new IOException(
          "a worker with egress needs Kiln's egress proxy: no Service "
              + SandboxPods.EGRESS_PROXY
              + " with a cluster address in namespace "
              + settings.kilnNamespace()
              + "; apply deploy/kubernetes/egress.yaml");
    }
    return (ip.contains(":") ? "[" + ip + "]" : ip) + ":" + SandboxPods.EGRESS_PROXY_PORT;
  }

  /**
   * A sandbox closed: this replica's annotation goes from its pod, then the replica claims one pod
   * fewer, and the reconciler removes pods no replica holds first. (Lowering the claim before would
   * let the reconciler remove a pod still in use.)
   */
  void release(PodSandbox s) {
    if (live.remove(s.id(), s)) {
      hold(s, false);
    }
    lower(s.worker());
  }

  @Override
  public List<Sandbox> sandboxes() {
    return List.copyOf(live.values());
  }

  /**
   * Stops watching. Starts under way fail and take back their claims; the claims of open sandboxes
   * go as each is closed. Pods other replicas claim stay.
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
