package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.Tenant;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.function.UnaryOperator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Each tenant's named workers ({@code CREATE WORKER}, and every UDF Query asks for by name), kept
 * in one JSON file of the data directory, so they survive a restart. Every change is written aside
 * and moved into place; a reader never sees half a file.
 */
final class Workers {
  private static final Logger log = LoggerFactory.getLogger(Workers.class);
  private static final ObjectMapper JSON =
      JsonMapper.builder().enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS).build();

  /** Whether a worker's sandboxes may run. */
  enum State {
    RUNNING,
    SUSPENDED
  }

  /**
   * One worker.
   *
   * @param name its name (a UDF's SQL name, or a {@code CREATE WORKER} name)
   * @param tags free-form tags
   * @param options options as given (checked by {@link WorkerOptions})
   * @param createdAt when it was created (RFC 3339)
   * @param updatedAt when it last changed (RFC 3339)
   * @param state running or suspended
   * @param key the content key of its current UDF definition, or null for a worker with none yet
   */
  record Worker(
      String name,
      Map<String, String> tags,
      Map<String, String> options,
      String createdAt,
      String updatedAt,
      State state,
      String key) {
    Worker {
      Objects.requireNonNull(name, "name");
      tags = Map.copyOf(tags);
      options = Map.copyOf(options);
      Objects.requireNonNull(createdAt, "createdAt");
      Objects.requireNonNull(updatedAt, "updatedAt");
      Objects.requireNonNull(state, "state");
    }

    /** A new worker, running, with no UDF definition yet. */
    static Worker create(
        String name, Map<String, String> tags, Map<String, String> options, Instant now) {
      return new Worker(name, tags, options, now.toString(), now.toString(), State.RUNNING, null);
    }

    Worker withState(State s, Instant now) {
      return new Worker(name, tags, options, createdAt, now.toString(), s, key);
    }

    Worker withKey(String k, Instant now) {
      return new Worker(name, tags, options, createdAt, now.toString(), state, k);
    }

    Worker with(Map<String, String> newTags, Map<String, String> newOptions, Instant now) {
      return new Worker(name, newTags, newOptions, createdAt, now.toString(), state, key);
    }
  }

  /** What the file holds: tenant name -> worker name -> worker. */
  private record Saved(Map<String, Map<String, Worker>> tenants) {}

  private final Path file;
  private final Map<String, Map<String, Worker>> tenants;

  private Workers(Path file, Map<String, Map<String, Worker>> tenants) {
    this.file = file;
    this.tenants = tenants;
  }

  /** The workers kept in {@code file} (none when it does not exist yet). */
  static Workers open(Path file) throws IOException {
    Map<String, Map<String, Worker>> tenants = new TreeMap<>();
    if (Files.isRegularFile(file)) {
      Saved saved = JSON.readValue(file.toFile(), Saved.class);
      if (saved.tenants() != null) {
        saved.tenants().forEach((t, ws) -> tenants.put(t, new TreeMap<>(ws)));
      }
      log.info(
          "{} workers of {} tenants from {}",
          tenants.values().stream().mapToInt(Map::size).sum(),
          tenants.size(),
          file);
    }
    return new Workers(file, tenants);
  }

  synchronized Optional<Worker> get(Tenant tenant, String name) {
    return Optional.ofNullable(tenants.getOrDefault(tenant.name(), Map.of()).get(name));
  }

  /** Every tenant's workers: tenant name to its workers. */
  synchronized Map<String, List<Worker>> all() {
    Map<String, List<Worker>> out = new TreeMap<>();
    tenants.forEach((t, ws) -> out.put(t, List.copyOf(ws.values())));
    return out;
  }

  /** The tenant's workers, by name. */
  synchronized List<Worker> list(Tenant tenant) {
    List<Worker> out = new ArrayList<>(tenants.getOrDefault(tenant.name(), Map.of()).values());
    out.sort(Comparator.comparing(Worker::name));
    return out;
  }

  /**
   * Changes the tenant's worker {@code name} with {@code change} (given the worker, or null when
   * there is none; returning null removes it) and keeps the result on disk. Returns the result.
   */
  synchronized Worker update(Tenant tenant, String name, UnaryOperator<Worker> change) {
    Map<String, Worker> byName = tenants.computeIfAbsent(tenant.name(), t -> new TreeMap<>());
    Worker before = byName.get(name);
    Worker after = change.apply(before);
    if (Objects.equals(before, after)) {
      return after;
    }
    if (after == null) {
      byName.remove(name);
      if (byName.isEmpty()) {
        tenants.remove(tenant.name());
      }
    } else {
      byName.put(name, after);
    }
    save();
    return after;
  }

  /**
   * The worker, resumed when it is suspended and its {@code auto_resume} allows (a query wants it);
   * a suspended worker that does not resume by itself is an error that says how to resume it.
   */
  Worker resumeIfSuspended(Tenant tenant, Worker w, boolean autoResume, Instant now)
      throws KilnException {
    if (w.state() != State.SUSPENDED) {
      return w;
    }
    if (!autoResume) {
      throw new KilnException(
          ErrorCode.WORKER_SUSPENDED,
          "worker "
              + w.name()
              + " is suspended; run ALTER WORKER "
              + w.name()
              + " RESUME (or set auto_resume = 'true')");
    }
    log.info("worker {} tenant={} resumes on a query (auto_resume)", w.name(), tenant);
    Worker resumed =
        update(tenant, w.name(), x -> x == null ? null : x.withState(State.RUNNING, now));
    return resumed == null ? w : resumed;
  }

  private void save() {
    try {
      Files.createDirectories(file.getParent());
      Path temp = Files.createTempFile(file.getParent(), ".workers", ".tmp");
      try {
        JSON.writerWithDefaultPrettyPrinter().writeValue(temp.toFile(), new Saved(tenants));
        Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } finally {
        Files.deleteIfExists(temp);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot keep the workers in " + file, e);
    }
  }
}
