package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import java.io.IOException;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.time.format.DateTimeParseException;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One builder per worker image among Kiln's replicas, chosen through the API server. A replica
 * about to build a worker's image first asks {@link #imageOrHold}: the image, when some replica
 * built it already; else it tries to hold the build, an annotation pair on the {@link UdfWorker}
 * ({@value #BUILDER}: the replica, {@value #UNTIL}: when the hold lapses) written over the resource
 * version it read (a conflict otherwise), so that of replicas racing for it exactly one wins. The
 * holder renews its hold while it builds and releases it when done; the others wait for the image
 * (or for the hold to lapse, when its holder died, and then race again).
 *
 * <p>Holds compare instants of different replicas' clocks: a hold of {@code hold} absorbs skew well
 * below it.
 */
public final class ImageBuilds implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ImageBuilds.class);

  /** The annotation naming the replica that builds the worker's image. */
  static final String BUILDER = UdfWorker.GROUP + "/builder";

  /** The annotation saying until when its hold lasts without renewal (an ISO-8601 instant). */
  static final String UNTIL = UdfWorker.GROUP + "/builder-until";

  /** How long a waiting replica trusts its cache before it reads the worker from the server. */
  private static final Duration FRESH_READ = Duration.ofSeconds(3);

  private final KubernetesClient client;
  private final KubernetesCaches caches;
  private final String namespace;
  private final String replica;
  private final Duration hold;
  private final InstantSource clock;
  private final Object changed = new Object();
  private final ResourceEventHandler<UdfWorker> events = events();
  private final Set<String> held = ConcurrentHashMap.newKeySet();
  private final ScheduledExecutorService renewer =
      Executors.newSingleThreadScheduledExecutor(
          Thread.ofPlatform().daemon().name("kiln-image-build-holds").factory());

  /**
   * @param client the API server
   * @param caches the replica's caches
   * @param settings where the workers are
   * @param replica this replica's name
   * @param hold how long a hold lasts unrenewed (renewed at a third of it)
   * @param clock the time holds are written and compared in
   */
  public ImageBuilds(
      KubernetesClient client,
      KubernetesCaches caches,
      KubernetesSettings settings,
      String replica,
      Duration hold,
      InstantSource clock) {
    this.client = client;
    this.caches = caches;
    this.namespace = settings.kilnNamespace();
    this.replica = replica;
    this.hold = hold;
    this.clock = clock;
    caches.workers.addEventHandler(events);
    long every = Math.max(1, hold.toMillis() / 3);
    renewer.scheduleWithFixedDelay(this::renew, every, every, TimeUnit.MILLISECONDS);
  }

  private ResourceEventHandler<UdfWorker> events() {
    return new ResourceEventHandler<>() {
      @Override
      public void onAdd(UdfWorker w) {
        wake();
      }

      @Override
      public void onUpdate(UdfWorker before, UdfWorker w) {
        wake();
      }

      @Override
      public void onDelete(UdfWorker w, boolean unknown) {
        wake();
      }
    };
  }

  private void wake() {
    synchronized (changed) {
      changed.notifyAll();
    }
  }

  /**
   * The image of {@code owner}'s {@code name} once a replica built it; empty when this replica is
   * to build it (it then holds the build until {@link #release}; a worker not made yet is made with
   * the hold). Waits while another replica holds the build, at most {@code maxWait}.
   *
   * @throws IOException when another replica held the build all of {@code maxWait}, or the API
   *     server cannot be asked
   */
  public Optional<String> imageOrHold(String owner, String name, Duration maxWait)
      throws IOException, InterruptedException {
    String worker = KubernetesNames.workerName(owner, name);
    try {
      return imageOrHold(worker, owner, name, maxWait);
    } catch (KubernetesClientException e) {
      throw new IOException(
          "cannot learn from the API server who builds the image of UDF worker "
              + worker
              + ": "
              + e.getMessage(),
          e);
    }
  }

  private Optional<String> imageOrHold(String worker, String owner, String name, Duration maxWait)
      throws IOException, InterruptedException {
    long deadline = System.nanoTime() + maxWait.toNanos();
    long readAt = System.nanoTime();
    boolean fresh = false;
    synchronized (changed) {
      while (true) {
        // The cache, and the API server itself after a conflict or every few seconds of waiting
        // (a cache may lag behind).
        fresh |= System.nanoTime() - readAt > FRESH_READ.toNanos();
        UdfWorker w = fresh ? get(worker) : caches.worker(worker);
        if (w == null && !fresh) {
          w = get(worker); // made a moment ago: not in the cache yet
        }
        if (fresh) {
          readAt = System.nanoTime();
        }
        if (w == null) {
          // Not declared yet (the request that made it is a moment behind): made here, held.
          if (createHeld(worker, owner, name)) {
            return Optional.empty();
          }
          fresh = true;
          continue;
        }
        String image = w.getSpec().getImage();
        if (image != null && !image.isEmpty()) {
          return Optional.of(image);
        }
        Map<String, String> a = annotations(w);
        Instant until = until(a);
        String holder = a.get(BUILDER);
        Instant now = clock.instant();
        if (holder == null || holder.equals(replica) || until == null || !now.isBefore(until)) {
          if (take(w, a)) {
            held.add(worker);
            log.info("{} builds the image of UDF worker {}", replica, worker);
            return Optional.empty();
          }
          fresh = true; // it changed since it was read: read it again
          continue;
        }
        fresh = false;
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          throw new IOException(
              "Kiln replica "
                  + holder
                  + " has been building the image of UDF worker "
                  + worker
                  + " for longer than "
                  + maxWait.toSeconds()
                  + " s; see its log, or run the query again later");
        }
        long toLapse = Duration.between(now, until).toMillis() + 1;
        changed.wait(Math.max(1, Math.min(Math.min(left / 1_000_000, toLapse), 1000)));
      }
    }
  }

  /** This replica's build of the worker ended (the image is in the worker, or it failed). */
  public void release(String owner, String name) {
    release(KubernetesNames.workerName(owner, name));
  }

  private void release(String worker) {
    if (!held.remove(worker)) {
      return;
    }
    try {
      rewrite(
          worker,
          a -> {
            a.remove(BUILDER);
            a.remove(UNTIL);
          });
    } catch (RuntimeException e) {
      // No API server to tell (the client closed): the hold lapses.
      log.warn("releasing the image build of {} failed: {}", worker, e.toString());
    }
  }

  /**
   * Changes the annotations of the worker while this replica holds its build, written only over the
   * version read (retried when another write came in between); nothing when the build is no longer
   * this replica's (taken over after a lapse) or the worker is gone.
   */
  private void rewrite(String worker, Consumer<Map<String, String>> change) {
    for (int attempt = 0; attempt < 5; attempt++) {
      UdfWorker w = get(worker);
      if (w == null || !replica.equals(annotations(w).get(BUILDER))) {
        return;
      }
      Map<String, String> next = new TreeMap<>(annotations(w));
      change.accept(next);
      if (update(w, next)) {
        return;
      }
    }
  }

  /** Makes the worker with this replica's hold on it; false when it was made meanwhile. */
  private boolean createHeld(String worker, String owner, String name) {
    UdfWorkerSpec s = new UdfWorkerSpec();
    s.setTenant(owner);
    s.setUdf(name);
    s.setKey(name);
    UdfWorker w = KubernetesProvisioner.newWorker(namespace, worker, s);
    w.getMetadata()
        .setAnnotations(
            new TreeMap<>(Map.of(BUILDER, replica, UNTIL, clock.instant().plus(hold).toString())));
    if (!Conflicts.won(() -> client.resource(w).create())) {
      return false;
    }
    held.add(worker);
    log.info("{} builds the image of UDF worker {}", replica, worker);
    return true;
  }

  /** Holds the build if the worker is still as read ({@code w}'s resource version). */
  private boolean take(UdfWorker w, Map<String, String> a) {
    Map<String, String> next = new TreeMap<>(a);
    next.put(BUILDER, replica);
    next.put(UNTIL, clock.instant().plus(hold).toString());
    return update(w, next);
  }

  /**
   * Writes {@code annotations} over the worker's, if it is still at the version read: false when
   * another write came first (409 Conflict). (A replace carrying the resource version, not a JSON
   * patch with a test: the mock API server of the tests never answers a failed test.)
   */
  private boolean update(UdfWorker w, Map<String, String> annotations) {
    UdfWorker next = client.getKubernetesSerialization().clone(w);
    next.getMetadata().setAnnotations(annotations);
    return Conflicts.won(() -> client.resource(next).update());
  }

  /** Pushes this replica's holds further while its builds run. */
  private void renew() {
    for (String worker : held) {
      try {
        rewrite(worker, a -> a.put(UNTIL, clock.instant().plus(hold).toString()));
      } catch (RuntimeException e) {
        log.warn("renewing the image build of {} failed: {}", worker, e.toString());
      }
    }
  }

  private UdfWorker get(String worker) {
    return client.resources(UdfWorker.class).inNamespace(namespace).withName(worker).get();
  }

  private static Map<String, String> annotations(UdfWorker w) {
    Map<String, String> a = w.getMetadata().getAnnotations();
    return a == null ? Map.of() : a;
  }

  private static Instant until(Map<String, String> a) {
    String s = a.get(UNTIL);
    try {
      return s == null ? null : Instant.parse(s);
    } catch (DateTimeParseException e) {
      return null;
    }
  }

  /** Stops renewing, and releases the holds of builds cut short by the replica's stop. */
  @Override
  public void close() {
    renewer.shutdownNow();
    caches.workers.removeEventHandler(events);
    List.copyOf(held).forEach(this::release);
    wake();
  }
}
