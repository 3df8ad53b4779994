package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.coordination.v1.Lease;
import io.fabric8.kubernetes.api.model.coordination.v1.LeaseBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.time.ZoneOffset;
import java.time.ZonedDateTime;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Each Kiln replica's own Lease in Kiln's namespace ({@code kiln-replica-<hash>}), renewed while
 * the replica runs and deleted when it stops: how the reconciler tells the claims and pod marks of
 * a replica that crashed (its lease lapsed) from those of one at work, and takes the former back.
 */
public final class ReplicaLeases implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(ReplicaLeases.class);

  /** The component label of replica leases. */
  static final String COMPONENT = "kiln-replica";

  private final KubernetesClient client;
  private final String namespace;
  private final String replica;
  private final Duration duration;
  private final InstantSource clock;
  private final ScheduledExecutorService renewer =
      Executors.newSingleThreadScheduledExecutor(
          Thread.ofPlatform().daemon().name("kiln-replica-lease").factory());

  /**
   * Writes this replica's lease now and renews it at a third of {@code settings}' lease duration.
   */
  public ReplicaLeases(
      KubernetesClient client, KubernetesSettings settings, String replica, InstantSource clock) {
    this.client = client;
    this.namespace = settings.kilnNamespace();
    this.replica = replica;
    this.duration = settings.leaseDuration();
    this.clock = clock;
    renew();
    long every = Math.max(1, duration.toMillis() / 3);
    renewer.scheduleWithFixedDelay(this::renew, every, every, TimeUnit.MILLISECONDS);
  }

  static String leaseName(String replica) {
    return COMPONENT + "-" + KubernetesNames.hash(replica);
  }

  private Lease lease() {
    return new LeaseBuilder()
        .withNewMetadata()
        .withName(leaseName(replica))
        .withNamespace(namespace)
        .addToLabels(KubernetesNames.MANAGED_BY, "kiln")
        .addToLabels(KubernetesNames.COMPONENT, COMPONENT)
        .endMetadata()
        .withNewSpec()
        .withHolderIdentity(replica)
        .withLeaseDurationSeconds((int) Math.max(1, duration.toSeconds()))
        .withRenewTime(ZonedDateTime.ofInstant(clock.instant(), ZoneOffset.UTC))
        .endSpec()
        .build();
  }

  private void renew() {
    try {
      var resource = client.leases().inNamespace(namespace).resource(lease());
      if (!Conflicts.won(resource::create)) {
        resource.update(); // unconditional: only this replica writes its lease
      }
    } catch (RuntimeException e) {
      log.warn("renewing the lease of Kiln replica {} failed: {}", replica, e.toString());
    }
  }

  /**
   * The replicas whose leases were renewed within their duration and {@code grace} (for clock skew
   * between replicas) before {@code now}.
   */
  static Set<String> alive(KubernetesClient client, String namespace, Instant now, Duration grace) {
    Set<String> alive = new HashSet<>();
    for (Lease l :
        client
            .leases()
            .inNamespace(namespace)
            .withLabel(KubernetesNames.COMPONENT, COMPONENT)
            .list()
            .getItems()) {
      var spec = l.getSpec();
      if (spec == null || spec.getHolderIdentity() == null || spec.getRenewTime() == null) {
        continue;
      }
      Instant renewed = spec.getRenewTime().toInstant();
      int seconds = spec.getLeaseDurationSeconds() == null ? 15 : spec.getLeaseDurationSeconds();
      if (renewed.plusSeconds(seconds).plus(grace).isAfter(now)) {
        alive.add(spec.getHolderIdentity());
      }
    }
    return alive;
  }

  /** Stops renewing and deletes the lease: the replica's claims are given back as it stops. */
  @Override
  public void close() {
    renewer.shutdownNow();
    try {
      client.leases().inNamespace(namespace).withName(leaseName(replica)).delete();
    } catch (RuntimeException e) {
      log.debug("deleting the lease of Kiln replica {}: {}", replica, e.toString());
    }
  }
}
