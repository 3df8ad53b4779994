package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import dev.kiln.provisioner.kubernetes.KubernetesProvisioner;
import java.io.IOException;
import java.util.Map;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The definitions Kiln's replicas share on Kubernetes: each record ({@link Definitions#write}) is
 * kept in the {@code UdfWorker} of its tenant and key, the same worker its sandbox pods belong to.
 */
final class ClusterDefinitions implements SharedDefinitions {
  private static final Logger log = LoggerFactory.getLogger(ClusterDefinitions.class);

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

  @Override
  public void put(Definitions.Entry e) {
    try {
      pods.declare(e.tenant().name(), workerOf(e.key()), Definitions.write(e));
    } catch (IOException x) {
      log.warn(
          "udf {} tenant={}: other Kiln replicas cannot serve its calls until it is kept in the"
              + " cluster: {}",
          e.key().shortForm(),
          e.tenant(),
          x.getMessage());
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
