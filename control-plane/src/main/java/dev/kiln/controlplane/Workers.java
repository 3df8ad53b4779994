package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.Tenant;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.function.BiConsumer;
import java.util.function.UnaryOperator;
import org.slf4j.LoggerFactory;

/**
 * Each tenant's named workers ({@code CREATE WORKER}, and every UDF Query asks for by name): in the
 * data directory on a single server ({@link FileWorkers}), in the API server with {@code
 * --kubernetes} ({@link ClusterWorkers}), where every replica reads and changes the same ones.
 */
interface Workers {
  /** How workers are written, in the file and in the cluster: map entries in key order. */
  ObjectMapper JSON =
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
    public Worker {
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

  Optional<Worker> get(Tenant tenant, String name);

  /** Every tenant's workers: tenant name to its workers. */
  Map<String, List<Worker>> all();

  /** The tenant's workers, by name. */
  List<Worker> list(Tenant tenant);

  /**
   * Changes the tenant's worker {@code name} with {@code change} (given the worker, or null when
   * there is none; returning null removes it) and keeps the result. Returns the result. {@code
   * change} may run more than once (another replica changed the worker meanwhile): it should only
   * compute.
   */
  Worker update(Tenant tenant, String name, UnaryOperator<Worker> change);

  /**
   * Tells {@code l} (tenant, name) of each worker another Kiln replica changes or drops, once this
   * one sees it; the listener looks the worker up and acts on what it finds. Nothing on a single
   * server.
   */
  default void listen(BiConsumer<Tenant, String> l) {}

  /**
   * The worker, resumed when it is suspended and its {@code auto_resume} allows (a query wants it);
   * a suspended worker that does not resume by itself is an error that says how to resume it.
   */
  default Worker resumeIfSuspended(Tenant tenant, Worker w, boolean autoResume, Instant now)
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
    LoggerFactory.getLogger(Workers.class)
        .info("worker {} tenant={} resumes on a query (auto_resume)", w.name(), tenant);
    Worker resumed =
        update(tenant, w.name(), x -> x == null ? null : x.withState(State.RUNNING, now));
    return resumed == null ? w : resumed;
  }
}
