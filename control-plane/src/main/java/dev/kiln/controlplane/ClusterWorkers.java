package dev.kiln.controlplane;

import com.fasterxml.jackson.core.JsonProcessingException;
import dev.kiln.definition.Tenant;
import dev.kiln.provisioner.kubernetes.WorkerRecords;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.BiConsumer;
import java.util.function.UnaryOperator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The workers of {@code kiln serve --kubernetes}, kept in the API server ({@link WorkerRecords}: a
 * ConfigMap per worker in Kiln's namespace), so that every replica lists, changes, suspends and
 * drops the same ones. Reads come from the replica's cache; a change is computed again when another
 * replica wrote first.
 */
final class ClusterWorkers implements Workers {
  private static final Logger log = LoggerFactory.getLogger(ClusterWorkers.class);
  private final WorkerRecords records;

  /**
   * The worker last read from each record (by tenant and name), so that a repeated CreateWorker
   * (Query asks on every query) reads its unchanged worker without parsing it again.
   */
  private final Map<String, Parsed> parsed = new ConcurrentHashMap<>();

  private record Parsed(String record, Worker worker) {}

  ClusterWorkers(WorkerRecords records) {
    this.records = records;
  }

  @Override
  public Optional<Worker> get(Tenant tenant, String name) {
    return records.get(tenant.name(), name).flatMap(r -> read(r, tenant.name(), name));
  }

  @Override
  public Map<String, List<Worker>> all() {
    Map<String, List<Worker>> out = new TreeMap<>();
    records
        .all()
        .forEach(
            (tenant, byName) -> {
              List<Worker> ws = new ArrayList<>();
              byName.forEach((name, r) -> read(r, tenant, name).ifPresent(ws::add));
              if (!ws.isEmpty()) {
                out.put(tenant, List.copyOf(ws));
              }
            });
    return out;
  }

  @Override
  public List<Worker> list(Tenant tenant) {
    List<Worker> out = new ArrayList<>(all().getOrDefault(tenant.name(), List.of()));
    out.sort(Comparator.comparing(Worker::name));
    return out;
  }

  @Override
  public Worker update(Tenant tenant, String name, UnaryOperator<Worker> change) {
    Worker[] after = new Worker[1];
    records.update(
        tenant.name(),
        name,
        before -> {
          Worker b = before == null ? null : read(before, tenant.name(), name).orElse(null);
          after[0] = change.apply(b);
          if (after[0] != null && after[0].equals(b)) {
            return before; // unchanged: nothing written
          }
          return after[0] == null ? null : write(after[0]);
        });
    if (after[0] == null) {
      parsed.remove(key(tenant.name(), name));
    }
    return after[0];
  }

  /**
   * Moves the workers a single server kept in {@code file} into the cluster (a name the cluster has
   * already keeps the cluster's), then renames the file aside; returns how many were moved.
   */
  int adopt(Path file) throws IOException {
    if (!Files.isRegularFile(file)) {
      return 0;
    }
    int moved = 0;
    for (Map.Entry<String, List<Worker>> t : FileWorkers.open(file).all().entrySet()) {
      Tenant tenant = new Tenant(t.getKey());
      for (Worker w : t.getValue()) {
        boolean[] taken = new boolean[1];
        update(
            tenant,
            w.name(),
            old -> {
              taken[0] = old == null;
              return old == null ? w : old;
            });
        moved += taken[0] ? 1 : 0;
      }
    }
    Path aside = file.resolveSibling(file.getFileName() + ".moved-to-cluster");
    Files.move(file, aside, StandardCopyOption.REPLACE_EXISTING);
    log.info("{} worker(s) of {} moved into the cluster; the file is now {}", moved, file, aside);
    return moved;
  }

  @Override
  public void listen(BiConsumer<Tenant, String> l) {
    records.listen((tenant, name) -> l.accept(new Tenant(tenant), name));
  }

  static String write(Worker w) {
    try {
      return JSON.writeValueAsString(w);
    } catch (JsonProcessingException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The worker a record holds; empty (and a warning) when it does not read as one. */
  private Optional<Worker> read(String record, String tenant, String name) {
    String key = key(tenant, name);
    Parsed last = parsed.get(key);
    if (last != null && last.record().equals(record)) {
      return Optional.of(last.worker());
    }
    try {
      Worker w = JSON.readValue(record, Worker.class);
      parsed.put(key, new Parsed(record, w));
      return Optional.of(w);
    } catch (JsonProcessingException | RuntimeException e) {
      log.warn(
          "skipping worker {} of tenant {} kept in the cluster: not a worker record ({}); drop it"
              + " (DROP WORKER) or delete its ConfigMap {}",
          name,
          tenant,
          e.getMessage(),
          WorkerRecords.configMapName(tenant, name));
      return Optional.empty();
    }
  }

  private static String key(String tenant, String name) {
    return tenant + "\0" + name;
  }
}
