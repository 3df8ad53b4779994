package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.ConfigMapBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.UnaryOperator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Records every Kiln replica reads and writes, one ConfigMap per (tenant, name) in Kiln's
 * namespace: Databend's named workers ({@code CREATE WORKER}, their options, tags and suspend
 * state), opaque text to this class. Reads come from a cache the API server's watch keeps (the hot
 * path asks on every query), plus what this replica wrote itself, so it reads its own writes before
 * the watch brings them; a name the cache does not know is asked of the API server (another replica
 * may have written it a moment ago). A change is written over the version it was computed from; a
 * replica that lost the race reads again and computes again.
 */
public final class WorkerRecords implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(WorkerRecords.class);

  /** The {@link KubernetesNames#COMPONENT} of these ConfigMaps. */
  public static final String COMPONENT = "udf-worker-record";

  /** Annotations holding the tenant and the name as they are (labels cannot). */
  static final String TENANT = UdfWorker.GROUP + "/tenant";

  static final String NAME = UdfWorker.GROUP + "/name";

  /** The ConfigMap key of the record. */
  static final String DATA = "record.json";

  /** How often a change is computed again after losing a race before the writer gives up. */
  static final int ATTEMPTS = 16;

  /**
   * Told of a record another replica changed or removed, once this replica sees it: at least once
   * per change, and sometimes of this replica's own writes too (the watch may bring one before the
   * write's answer). A listener looks the record up and acts on what it finds.
   */
  @FunctionalInterface
  public interface Listener {
    void changed(String tenant, String name);
  }

  private final KubernetesClient client;
  private final String namespace;
  private final SharedIndexInformer<ConfigMap> informer;

  /** By ConfigMap name: the newest this replica has seen or written. */
  private final Map<String, ConfigMap> seen = new ConcurrentHashMap<>();

  private final List<Listener> listeners = new CopyOnWriteArrayList<>();

  private WorkerRecords(KubernetesClient client, String namespace) {
    this.client = client;
    this.namespace = namespace;
    this.informer =
        client
            .configMaps()
            .inNamespace(namespace)
            .withLabel(KubernetesNames.MANAGED_BY, "kiln")
            .withLabel(KubernetesNames.COMPONENT, COMPONENT)
            .runnableInformer(KubernetesCaches.RESYNC_MILLIS);
    informer.addEventHandler(
        new ResourceEventHandler<>() {
          @Override
          public void onAdd(ConfigMap c) {
            observe(c, false);
          }

          @Override
          public void onUpdate(ConfigMap before, ConfigMap after) {
            observe(after, false);
          }

          @Override
          public void onDelete(ConfigMap c, boolean finalStateUnknown) {
            gone(c.getMetadata().getName());
          }
        });
  }

  /** Starts watching the records in {@code settings}' namespace; returns once the cache is full. */
  public static WorkerRecords start(KubernetesClient client, KubernetesSettings settings) {
    WorkerRecords r = new WorkerRecords(client, settings.kilnNamespace());
    r.informer.run();
    return r;
  }

  /** Tells {@code l} of every record that changes from now on. */
  public void listen(Listener l) {
    listeners.add(l);
  }

  /** The tenant's record {@code name}, if there is one. */
  public Optional<String> get(String tenant, String name) {
    ConfigMap c = seen.get(configMapName(tenant, name));
    if (c == null) {
      c = read(tenant, name);
    }
    return Optional.ofNullable(c).map(WorkerRecords::record);
  }

  /** Every record as last seen: tenant to name to record. */
  public Map<String, Map<String, String>> all() {
    Map<String, Map<String, String>> out = new TreeMap<>();
    for (ConfigMap c : seen.values()) {
      String tenant = annotation(c, TENANT);
      String name = annotation(c, NAME);
      String record = record(c);
      if (tenant != null && name != null && record != null) {
        out.computeIfAbsent(tenant, t -> new TreeMap<>()).put(name, record);
      }
    }
    return out;
  }

  /**
   * Changes the tenant's record {@code name} with {@code change} (given the record, or null when
   * there is none; returning null removes it) and returns the result once the API server keeps it.
   * {@code change} may run more than once (another replica wrote in between): it should only
   * compute.
   */
  public String update(String tenant, String name, UnaryOperator<String> change) {
    String cmName = configMapName(tenant, name);
    ConfigMap current = seen.get(cmName);
    if (current == null) {
      current = read(tenant, name);
    }
    for (int attempt = 1; ; attempt++) {
      String before = current == null ? null : record(current);
      String after = change.apply(before);
      if (Objects.equals(before, after)) {
        return after;
      }
      ConfigMap written;
      try {
        written = write(tenant, name, current, after);
      } catch (KubernetesClientException e) {
        if ((e.getCode() != 409 && e.getCode() != 404) || attempt >= ATTEMPTS) {
          throw e;
        }
        log.debug("record {}/{} changed meanwhile; computing again", tenant, name);
        current = read(tenant, name);
        continue;
      }
      if (written == null) {
        seen.remove(cmName);
      } else {
        observe(written, true);
      }
      return after;
    }
  }

  /** Writes {@code record} over {@code current}; null when it was deleted. */
  private ConfigMap write(String tenant, String name, ConfigMap current, String record) {
    var resource = client.configMaps().inNamespace(namespace).withName(configMapName(tenant, name));
    if (record == null) {
      resource.delete();
      return null;
    }
    if (current == null) {
      return client
          .configMaps()
          .inNamespace(namespace)
          .resource(build(tenant, name, record))
          .create();
    }
    ConfigMap next =
        new ConfigMapBuilder(current).withData(new HashMap<>(Map.of(DATA, record))).build();
    // Written over the version read (it is in next's metadata): 409 when another replica wrote
    // since.
    return client.resource(next).update();
  }

  /** The record as the API server has it now (null when there is none), kept as seen. */
  private ConfigMap read(String tenant, String name) {
    String cmName = configMapName(tenant, name);
    ConfigMap c = client.configMaps().inNamespace(namespace).withName(cmName).get();
    if (c == null) {
      gone(cmName);
    } else {
      observe(c, false);
    }
    return c;
  }

  private ConfigMap build(String tenant, String name, String record) {
    return new ConfigMapBuilder()
        .withNewMetadata()
        .withName(configMapName(tenant, name))
        .withNamespace(namespace)
        .addToLabels(KubernetesNames.MANAGED_BY, "kiln")
        .addToLabels(KubernetesNames.COMPONENT, COMPONENT)
        .addToLabels(KubernetesNames.TENANT, KubernetesNames.labelValue(tenant))
        .addToAnnotations(TENANT, tenant)
        .addToAnnotations(NAME, name)
        .endMetadata()
        .withData(new HashMap<>(Map.of(DATA, record)))
        .build();
  }

  /**
   * Keeps {@code c} when it is newer than what was seen, and tells the listeners when its record
   * changed and another replica wrote it.
   */
  private void observe(ConfigMap c, boolean ownWrite) {
    ConfigMap[] before = new ConfigMap[1];
    ConfigMap kept =
        seen.compute(
            c.getMetadata().getName(),
            (n, old) -> {
              before[0] = old;
              return old == null ? c : newer(old, c);
            });
    if (!ownWrite
        && kept == c
        && (before[0] == null || !Objects.equals(record(before[0]), record(c)))) {
      tell(c);
    }
  }

  private void gone(String cmName) {
    ConfigMap was = seen.remove(cmName);
    if (was != null) {
      tell(was);
    }
  }

  private void tell(ConfigMap c) {
    String tenant = annotation(c, TENANT);
    String name = annotation(c, NAME);
    if (tenant == null || name == null) {
      return;
    }
    for (Listener l : listeners) {
      try {
        l.changed(tenant, name);
      } catch (RuntimeException e) {
        log.warn("record {}/{}: a listener failed: {}", tenant, name, e.toString());
      }
    }
  }

  /**
   * The later of two versions of one ConfigMap. Resource versions are opaque, but an etcd-backed
   * API server (and the test server) hands out increasing numbers; anything else keeps the later
   * arrival.
   */
  private static ConfigMap newer(ConfigMap a, ConfigMap b) {
    try {
      long va = Long.parseLong(a.getMetadata().getResourceVersion());
      long vb = Long.parseLong(b.getMetadata().getResourceVersion());
      return vb >= va ? b : a;
    } catch (NumberFormatException | NullPointerException e) {
      return b;
    }
  }

  private static String record(ConfigMap c) {
    return c.getData() == null ? null : c.getData().get(DATA);
  }

  private static String annotation(ConfigMap c, String key) {
    Map<String, String> a = c.getMetadata().getAnnotations();
    return a == null ? null : a.get(key);
  }

  /** The ConfigMap of the tenant's record {@code name}. */
  public static String configMapName(String tenant, String name) {
    return "kiln-worker-" + KubernetesNames.workerName(tenant, name);
  }

  @Override
  public void close() {
    informer.close();
  }
}
