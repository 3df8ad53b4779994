package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.dsl.NonDeletingOperation;
import io.fabric8.kubernetes.client.dsl.Resource;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderCallbacks;
import io.fabric8.kubernetes.client.extended.leaderelection.LeaderElectionConfigBuilder;
import io.fabric8.kubernetes.client.extended.leaderelection.resourcelock.LeaseLock;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Turns {@link UdfWorker} resources into sandbox pods. Every Kiln replica runs one; the one holding
 * the lease {@value #LEASE} in Kiln's namespace reconciles, the others wait to take over (a leader
 * that stops renewing loses the lease after {@link KubernetesSettings#leaseDuration}).
 *
 * <p>Reconciling a worker, level-based and idempotent: its tenant's namespace and network policy
 * exist; exactly {@link UdfWorkerSpec#desiredPods} pods of its current template run (ended and
 * out-of-date pods are replaced, extra ones removed: those no Kiln replica holds first, then those
 * not ready); its status lists the ready pods' runner endpoints. Pods of a deleted worker are
 * deleted. Pods this reconciler created or deleted count as such until its informer sees them, so a
 * quick second pass starts no extra pod. A pass that fails is tried again.
 *
 * <p>Every lease duration the leader also takes back the claims and pod marks of replicas that
 * crashed: those whose own {@link ReplicaLeases lease} lapsed, seen so twice in a row.
 */
public final class UdfWorkerReconciler implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(UdfWorkerReconciler.class);

  /** The lease whose holder reconciles. */
  public static final String LEASE = "kiln-reconciler";

  private static final Duration RETRY = Duration.ofSeconds(1);
  // A pod created but never seen by the informer (deleted at once by someone else) stops counting.
  private static final Duration UNSEEN = Duration.ofSeconds(60);
  private static final String POD_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789";

  private final KubernetesClient client;
  private final KubernetesSettings settings;
  private final String identity;
  private final ScheduledExecutorService queue;
  private final Set<String> pending = ConcurrentHashMap.newKeySet();

  /** Worker name -> pods created (name -> when) that the informer has not shown yet. */
  private final Map<String, Map<String, Long>> created = new ConcurrentHashMap<>();

  /** {@code namespace/name} of pods deleted that the informer still shows. */
  private final Set<String> deleted = ConcurrentHashMap.newKeySet();

  private final Set<String> tenantsReady = ConcurrentHashMap.newKeySet();

  /** Leaderships so far: a sweep of an earlier one ends. */
  private final AtomicInteger terms = new AtomicInteger();

  /** Replicas with claims but no live lease -> sweeps in a row they were seen so. */
  private final Map<String, Integer> suspects = new ConcurrentHashMap<>();

  private final SecureRandom random = new SecureRandom();
  private final ResourceEventHandler<UdfWorker> workerEvents =
      handler(w -> enqueue(w.getMetadata().getName()), w -> {});
  private final ResourceEventHandler<Pod> podEvents = handler(this::seen, this::gone);
  private final KubernetesCaches caches;
  private boolean started;
  private volatile boolean leading;
  private volatile boolean closed;
  private volatile CompletableFuture<?> election;

  /**
   * @param client the API server
   * @param caches the replica's caches, shared with its pod provisioner
   * @param settings how sandboxes run
   * @param identity this replica's name in the lease (its pod name)
   */
  public UdfWorkerReconciler(
      KubernetesClient client,
      KubernetesCaches caches,
      KubernetesSettings settings,
      String identity) {
    this.caches = Objects.requireNonNull(caches, "caches");
    this.client = Objects.requireNonNull(client, "client");
    this.settings = Objects.requireNonNull(settings, "settings");
    this.identity = Objects.requireNonNull(identity, "identity");
    this.queue =
        Executors.newSingleThreadScheduledExecutor(
            r -> {
              Thread t = new Thread(r, "kiln-reconciler");
              t.setDaemon(true);
              return t;
            });
  }

  /** Starts following the workers and sandbox pods of the caches and competes for the lease. */
  public synchronized void start() {
    if (started) {
      return;
    }
    started = true;
    // The caches hand every worker over again now and then: a pass an event missed still happens.
    caches.workers.addEventHandler(workerEvents);
    caches.pods.addEventHandler(podEvents);
    elect();
  }

  /** Whether this replica holds the lease now. */
  public boolean isLeader() {
    return leading;
  }

  private void elect() {
    if (closed) {
      return;
    }
    Duration lease = settings.leaseDuration();
    election =
        client
            .leaderElector()
            .withConfig(
                new LeaderElectionConfigBuilder()
                    .withName(LEASE)
                    .withLock(new LeaseLock(settings.kilnNamespace(), LEASE, identity))
                    .withLeaseDuration(lease)
                    .withRenewDeadline(lease.multipliedBy(2).dividedBy(3))
                    .withRetryPeriod(lease.dividedBy(5))
                    .withReleaseOnCancel(true)
                    .withLeaderCallbacks(
                        new LeaderCallbacks(
                            this::startLeading,
                            this::stopLeading,
                            leader -> log.info("the reconciling Kiln replica is {}", leader)))
                    .build())
            .build()
            .start();
    // A replica that lost the lease competes for it again.
    election.whenComplete(
        (v, e) -> {
          if (!closed) {
            queue.execute(this::elect);
          }
        });
  }

  private void startLeading() {
    log.info("{} reconciles UDF workers", identity);
    leading = true;
    tenantsReady.clear();
    Set<String> names = new HashSet<>();
    caches.workers.getStore().list().forEach(w -> names.add(w.getMetadata().getName()));
    // Pods of deleted workers too.
    caches.pods.getStore().list().forEach(p -> names.add(KubernetesCaches.workerOf(p)));
    names.forEach(this::enqueue);
    suspects.clear();
    long every = settings.leaseDuration().toMillis();
    int term = terms.incrementAndGet();
    queue.scheduleWithFixedDelay(() -> sweepReplicas(term), every, every, TimeUnit.MILLISECONDS);
  }

  /**
   * Takes back the claims and pod marks of replicas whose lease lapsed (they crashed; a replica
   * that stops gives its own back), so their pods go. While leading only; stops with the
   * leadership.
   */
  private void sweepReplicas(int term) {
    if (!leading || closed || term != terms.get()) {
      throw new CancellationException("no longer leading"); // ends this schedule
    }
    Set<String> alive;
    try {
      alive =
          ReplicaLeases.alive(
              client, settings.kilnNamespace(), Instant.now(), settings.leaseDuration());
    } catch (RuntimeException e) {
      log.warn("reading the Kiln replicas' leases failed: {}", e.toString());
      return;
    }
    alive.add(identity);
    Set<String> dead = new HashSet<>();
    for (UdfWorker w : caches.workers()) {
      for (String replica : w.getSpec().getClaims().keySet()) {
        if (!alive.contains(replica)) {
          dead.add(replica);
        }
      }
    }
    suspects.keySet().retainAll(dead);
    dead.forEach(r -> suspects.merge(r, 1, Integer::sum));
    Set<String> gone = new HashSet<>();
    suspects.forEach(
        (r, n) -> {
          if (n >= 2) {
            gone.add(r);
          }
        });
    if (gone.isEmpty()) {
      return;
    }
    for (UdfWorker w : caches.workers()) {
      List<Map<String, Object>> ops = new ArrayList<>();
      for (String replica : w.getSpec().getClaims().keySet()) {
        if (gone.contains(replica)) {
          ops.add(JsonPatch.remove(JsonPatch.claim(replica)));
        }
      }
      if (!ops.isEmpty()) {
        patchQuietly(
            client
                .resources(UdfWorker.class)
                .inNamespace(settings.kilnNamespace())
                .withName(w.getMetadata().getName()),
            ops);
        log.info(
            "UDF worker {}: took back the claims of stopped Kiln replica(s) {}",
            w.getMetadata().getName(),
            gone);
      }
    }
    Set<String> marks = new HashSet<>();
    gone.forEach(r -> marks.add(KubernetesNames.holder(r)));
    for (Pod p : caches.pods.getStore().list()) {
      Map<String, String> a = p.getMetadata().getAnnotations();
      List<Map<String, Object>> ops = new ArrayList<>();
      if (a != null) {
        for (String key : a.keySet()) {
          if (marks.contains(key)) {
            ops.add(JsonPatch.remove(JsonPatch.annotation(key)));
          }
        }
      }
      if (!ops.isEmpty()) {
        patchQuietly(
            client
                .pods()
                .inNamespace(p.getMetadata().getNamespace())
                .withName(p.getMetadata().getName()),
            ops);
      }
    }
    suspects.keySet().removeAll(gone);
  }

  private static void patchQuietly(Resource<?> resource, List<Map<String, Object>> ops) {
    try {
      JsonPatch.apply(resource, ops);
    } catch (KubernetesClientException e) {
      log.warn("taking back a stopped replica's claim failed: {}", e.getMessage());
    }
  }

  private void stopLeading() {
    log.info("{} no longer reconciles UDF workers", identity);
    leading = false;
  }

  private void enqueue(String worker) {
    if (leading && !closed && pending.add(worker)) {
      queue.execute(
          () -> {
            pending.remove(worker);
            if (!leading || closed) {
              return;
            }
            try {
              reconcile(worker);
            } catch (KubernetesClientException | IllegalArgumentException e) {
              log.warn(
                  "reconciling UDF worker {} failed, trying again: {}", worker, e.getMessage());
              queue.schedule(() -> enqueue(worker), RETRY.toMillis(), TimeUnit.MILLISECONDS);
            }
          });
    }
  }

  private void seen(Pod p) {
    Map<String, Long> mine = created.get(KubernetesCaches.workerOf(p));
    if (mine != null) {
      mine.remove(p.getMetadata().getName());
    }
    enqueue(KubernetesCaches.workerOf(p));
  }

  private void gone(Pod p) {
    deleted.remove(KubernetesCaches.id(p));
  }

  /** One pass over one worker; see the class comment. */
  private void reconcile(String name) {
    UdfWorker w = caches.worker(name);
    List<Pod> live = new ArrayList<>();
    for (Pod p : caches.podsOf(name)) {
      String id = KubernetesCaches.id(p);
      if (p.getMetadata().getDeletionTimestamp() != null || deleted.contains(id)) {
        continue;
      }
      if (w == null
          || SandboxPods.hasEnded(p)
          || (KubernetesNames.isCondemned(p) && !KubernetesNames.isHeld(p))) {
        delete(p); // a condemned pod's removal finishes even when a pass ended before it
      } else {
        live.add(p);
      }
    }
    if (w == null) {
      created.remove(name);
      return;
    }
    UdfWorkerSpec spec = w.getSpec();
    if (spec.getTenant() == null || spec.getTenant().isEmpty()) {
      setStatus(w, status(w, "Invalid", List.of(), 0, "spec.tenant is empty: set the tenant"));
      return;
    }
    int desired = spec.desiredPods();
    if (desired > 0) {
      ensureTenant(spec.getTenant());
    }
    String template = SandboxPods.template(spec, settings);
    List<Pod> current = new ArrayList<>();
    for (Pod p : live) {
      if (template.equals(p.getMetadata().getLabels().get(KubernetesNames.TEMPLATE))) {
        current.add(p);
      } else {
        delete(p);
      }
    }
    Map<String, Long> unseen = created.computeIfAbsent(name, k -> new ConcurrentHashMap<>());
    long now = System.nanoTime();
    unseen.values().removeIf(t -> now - t > UNSEEN.toNanos());
    // The cache may show a pod before its event reaches this reconciler.
    live.forEach(p -> unseen.remove(p.getMetadata().getName()));
    int count = current.size() + unseen.size();
    if (count > desired) {
      // Remove pods no replica holds first, then those not ready, then the newest.
      current.sort(
          Comparator.comparing(KubernetesNames::isHeld)
              .thenComparing(SandboxPods::isReady)
              .thenComparing(
                  p -> String.valueOf(p.getMetadata().getCreationTimestamp()),
                  Comparator.reverseOrder()));
      while (count > desired && !current.isEmpty()) {
        Pod victim = current.removeFirst();
        if (!KubernetesNames.isHeld(victim) && !condemn(victim)) {
          break; // a replica took it a moment ago: its claim changes what is desired
        }
        delete(victim);
        count--;
      }
    }
    for (; count < desired; count++) {
      String podName = name + "-" + suffix();
      client
          .pods()
          .inNamespace(KubernetesNames.tenantNamespace(spec.getTenant()))
          .resource(SandboxPods.pod(name, spec, settings, podName))
          .create();
      unseen.put(podName, System.nanoTime());
      log.info("UDF worker {}: started pod {}", name, podName);
    }
    List<String> endpoints =
        current.stream()
            .filter(SandboxPods::isReady)
            .map(p -> p.getStatus().getPodIP() + ":" + settings.runnerPort())
            .sorted()
            .toList();
    String phase;
    String message;
    if (spec.isSuspended()) {
      phase = "Suspended";
      message = "suspended: no pods until it is resumed";
    } else if (desired == 0 && (spec.getImage() == null || spec.getImage().isEmpty())) {
      phase = "Waiting";
      message = "waiting for its image to be built and pushed";
    } else if (!endpoints.isEmpty()) {
      phase = "Ready";
      message = endpoints.size() + " of " + desired + " pods ready";
    } else {
      phase = "Starting";
      message = "0 of " + desired + " pods ready";
    }
    setStatus(w, status(w, phase, endpoints, count, message));
  }

  private static UdfWorkerStatus status(
      UdfWorker w, String phase, List<String> endpoints, int pods, String message) {
    UdfWorkerStatus s = new UdfWorkerStatus();
    s.setPhase(phase);
    s.setPods(pods);
    s.setReadyPods(endpoints.size());
    s.setEndpoints(new ArrayList<>(endpoints));
    s.setObservedGeneration(w.getMetadata().getGeneration());
    s.setMessage(message);
    return s;
  }

  private void setStatus(UdfWorker w, UdfWorkerStatus s) {
    if (s.equals(w.getStatus())) {
      return;
    }
    // A JSON patch (RFC 6902) of the status alone: it never conflicts with a spec change.
    JsonPatch.apply(
        client
            .resources(UdfWorker.class)
            .inNamespace(settings.kilnNamespace())
            .withName(w.getMetadata().getName())
            .subresource("status"),
        List.of(JsonPatch.add("/status", s)));
  }

  /** The tenant's namespace and network policy, made once per leadership. */
  private void ensureTenant(String tenant) {
    if (tenantsReady.contains(tenant)) {
      return;
    }
    client
        .namespaces()
        .resource(SandboxPods.namespace(tenant))
        .createOr(NonDeletingOperation::update);
    for (var policy :
        List.of(
            SandboxPods.networkPolicy(tenant, settings),
            SandboxPods.egressNetworkPolicy(tenant, settings))) {
      client
          .network()
          .v1()
          .networkPolicies()
          .inNamespace(KubernetesNames.tenantNamespace(tenant))
          .resource(policy)
          .createOr(NonDeletingOperation::update);
    }
    tenantsReady.add(tenant);
  }

  /**
   * Marks a pod no replica held when last seen as being removed; false (the mark taken off again)
   * when the answer shows a replica holding it by now. A replica marking it later sees the mark and
   * gives it up ({@link KubernetesNames#CONDEMNED}).
   */
  boolean condemn(Pod p) {
    var pod =
        client
            .pods()
            .inNamespace(p.getMetadata().getNamespace())
            .withName(p.getMetadata().getName());
    Pod marked;
    try {
      marked = JsonPatch.annotate(pod, KubernetesNames.CONDEMNED, "true");
    } catch (KubernetesClientException e) {
      return e.getCode() == 404; // gone already
    }
    if (!KubernetesNames.isHeld(marked)) {
      return true;
    }
    try {
      JsonPatch.apply(
          pod, List.of(JsonPatch.remove(JsonPatch.annotation(KubernetesNames.CONDEMNED))));
    } catch (KubernetesClientException e) {
      log.warn("unmarking pod {} failed: {}", KubernetesCaches.id(p), e.getMessage());
    }
    return false;
  }

  private void delete(Pod p) {
    deleted.add(KubernetesCaches.id(p));
    client
        .pods()
        .inNamespace(p.getMetadata().getNamespace())
        .withName(p.getMetadata().getName())
        .delete();
    log.info(
        "UDF worker {}: removed pod {}", KubernetesCaches.workerOf(p), p.getMetadata().getName());
  }

  private String suffix() {
    StringBuilder s = new StringBuilder();
    for (int i = 0; i < 5; i++) {
      s.append(POD_NAME_CHARS.charAt(random.nextInt(POD_NAME_CHARS.length())));
    }
    return s.toString();
  }

  private static <T> ResourceEventHandler<T> handler(Consumer<T> changed, Consumer<T> deleted) {
    return new ResourceEventHandler<>() {
      @Override
      public void onAdd(T obj) {
        changed.accept(obj);
      }

      @Override
      public void onUpdate(T oldObj, T newObj) {
        changed.accept(newObj);
      }

      @Override
      public void onDelete(T obj, boolean finalStateUnknown) {
        deleted.accept(obj);
        changed.accept(obj);
      }
    };
  }

  /** Stops reconciling and watching, and gives the lease up so another replica takes over. */
  @Override
  public synchronized void close() {
    closed = true;
    leading = false;
    CompletableFuture<?> e = election;
    if (e != null) {
      e.cancel(true);
    }
    if (started) {
      caches.workers.removeEventHandler(workerEvents);
      caches.pods.removeEventHandler(podEvents);
    }
    queue.shutdownNow();
  }
}
