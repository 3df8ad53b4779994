package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import dev.kiln.provisioner.kubernetes.KubernetesProvisioner;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executor;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The definitions Kiln's replicas share on Kubernetes: each record ({@link Definitions#write}) is
 * kept in the {@code UdfWorker} of its tenant and key, the same worker its sandbox pods belong to.
 */
final class ClusterDefinitions implements SharedDefinitions {
  private static final Logger log = LoggerFactory.getLogger(ClusterDefinitions.class);

  /** How long a request waits for its definition to be kept in the cluster. */
  static final Duration PUT_WAIT = Duration.ofSeconds(2);

  private static final Executor WRITERS = Executors.newVirtualThreadPerTaskExecutor();

  private final KubernetesProvisioner pods;

  ClusterDefinitions(KubernetesProvisioner pods) {
    this.pods = pods;
  }

  /**
   * The name of a definition's worker: its sandboxes' name ({@link ModuleSteps} places them so).
   */
  static String workerOf(ContentKey key) {
    return key.shortForm();
  }

  /**
   * Kept in the worker before the answer goes out, waiting at most {@link #PUT_WAIT} (Databend's
   * call has a 5 s deadline): an API server slower than that gets the record in the background.
   */
  @Override
  public void put(Definitions.Entry e) {
    CompletableFuture<Void> kept =
        CompletableFuture.runAsync(
            () -> {
              try {
                pods.declare(e.tenant().name(), workerOf(e.key()), Definitions.write(e));
              } catch (IOException x) {
                throw new UncheckedIOException(x);
              }
            },
            WRITERS);
    try {
      kept.get(PUT_WAIT.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException x) {
      log.warn(
          "udf {} tenant={}: the API server has not kept its definition within {} ms; it goes"
              + " on in the background (until then other replicas cannot serve its calls)",
          e.key().shortForm(),
          e.tenant(),
          PUT_WAIT.toMillis());
    } catch (ExecutionException x) {
      log.warn(
          "udf {} tenant={}: other Kiln replicas cannot serve its calls until it is kept in the"
              + " cluster: {}",
          e.key().shortForm(),
          e.tenant(),
          x.getCause().getMessage());
    } catch (InterruptedException x) {
      Thread.currentThread().interrupt();
    }
  }

  @Override
  public Optional<Definitions.Entry> get(Tenant tenant, ContentKey key) {
    return pods.record(tenant.name(), workerOf(key))
        .flatMap(r -> read(r, tenant.name() + "/" + workerOf(key)))
        .filter(e -> e.tenant().equals(tenant) && e.key().equals(key));
  }

  @Override
  public void removeOwned(Tenant tenant, String owner) {
    for (Map.Entry<String, String> r : pods.records(tenant.name()).entrySet()) {
      read(r.getValue(), tenant.name() + "/" + r.getKey())
          .filter(e -> owner.equals(e.owner()))
          .ifPresent(e -> pods.forget(tenant.name(), r.getKey()));
    }
  }

  private static Optional<Definitions.Entry> read(String record, String where) {
    try {
      return Optional.of(Definitions.read(record));
    } catch (IOException | KilnException | RuntimeException e) {
      log.warn("skipping the definition kept in UDF worker {}: {}", where, e.getMessage());
      return Optional.empty();
    }
  }
}
