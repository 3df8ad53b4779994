package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest;
import dev.kiln.controlplane.proto.resource.AlterWorkerResponse;
import dev.kiln.controlplane.proto.resource.CreateWorkerRequest;
import dev.kiln.controlplane.proto.resource.CreateWorkerResponse;
import dev.kiln.controlplane.proto.resource.DropWorkerRequest;
import dev.kiln.controlplane.proto.resource.DropWorkerResponse;
import dev.kiln.controlplane.proto.resource.ListWorkersRequest;
import dev.kiln.controlplane.proto.resource.ListWorkersResponse;
import dev.kiln.controlplane.proto.resource.WorkerServiceGrpc;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.StagedImport;
import dev.kiln.definition.Tenant;
import dev.kiln.definition.UdfDefinition;
import io.grpc.Context;
import io.grpc.stub.StreamObserver;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.Executor;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code resourceproto.WorkerService}, what Databend Query calls today: {@code CreateWorker} with
 * {@code type = "udf"} and the script Query renders, on every query that binds a Python UDF (read
 * into a {@link UdfDefinition}, never run, and served exactly like ApplyUdfResource); and the
 * worker DDL — {@code CREATE WORKER} (CreateWorker with no type and no script), {@code ALTER
 * WORKER}, {@code DROP WORKER}, {@code SHOW WORKERS}. A worker and a UDF of the same name are one
 * record; the UDF runs with its worker's options.
 */
final class WorkerService extends WorkerServiceGrpc.WorkerServiceImplBase {
  private static final Logger log = LoggerFactory.getLogger(WorkerService.class);

  /** The option ListWorkers adds to show a worker's state; it cannot be set. */
  static final String STATE_OPTION = "state";

  /**
   * How long a replaced version (CREATE OR REPLACE FUNCTION, a re-uploaded import, new environment)
   * must go without calls before {@link IdleSuspender} stops it: queries bound to it finish first.
   */
  static final Duration RETIRE_AFTER = Duration.ofSeconds(180);

  /** The content identity of an import that arrived without a tag. */
  @FunctionalInterface
  interface ImportTags {
    String tag(Tenant tenant, StagedImport imp) throws KilnException, InterruptedException;
  }

  private final UdfRequests requests;
  private final Workers workers;
  private final WorkerSizes sizes;
  private final Sizing serverSizing;
  private final Duration defaultAutoSuspend;
  private final UdfRegistry registry;
  private final ImportTags importTags;
  private final UdfEnv udfEnv;
  private final EgressPolicies egress;
  private final Executor blocking;
  private final String endpoint;
  private final InstantSource clock;
  private final Timer createTimer;
  private final Counter hot;
  private final Counter cold;
  private final Counter rejected;

  WorkerService(
      UdfRequests requests,
      Workers workers,
      WorkerSizes sizes,
      Sizing serverSizing,
      Duration defaultAutoSuspend,
      UdfRegistry registry,
      ImportTags importTags,
      UdfEnv udfEnv,
      EgressPolicies egress,
      Executor blocking,
      String endpoint,
      InstantSource clock,
      MeterRegistry meters) {
    this.requests = requests;
    this.workers = workers;
    this.sizes = sizes;
    this.serverSizing = serverSizing;
    this.defaultAutoSuspend = defaultAutoSuspend;
    this.registry = registry;
    this.importTags = importTags;
    this.udfEnv = udfEnv;
    this.egress = egress;
    this.blocking = blocking;
    this.endpoint = endpoint;
    this.clock = clock;
    this.createTimer =
        Timer.builder("kiln.create_worker")
            .description("CreateWorker latency (UDFs)")
            .publishPercentiles(0.5, 0.99)
            .register(meters);
    RequestCounters counters =
        RequestCounters.register(meters, "kiln.create_worker.requests", "CreateWorker");
    this.hot = counters.hot();
    this.cold = counters.cold();
    this.rejected = counters.rejected();
  }

  @Override
  public void createWorker(CreateWorkerRequest request, StreamObserver<CreateWorkerResponse> out) {
    long t0 = System.nanoTime();
    try {
      Tenant tenant = tenant(request.getTenantId());
      String name = name(request.getName());
      String type = request.getType();
      if (type.isEmpty() && request.getScript().isEmpty()) {
        Workers.Worker w = record(tenant, name, request);
        finish(out, CreateWorkerResponse.newBuilder().setWorker(toProto(w)).build());
        return;
      }
      if (!type.equals("udf") && !type.isEmpty()) {
        throw new KilnException(
            ErrorCode.INVALID_CALL,
            "CreateWorker type '"
                + type
                + "' is not supported; Kiln serves type 'udf' (with a script) and CREATE WORKER"
                + " (no type, no script)");
      }
      UdfDefinition definition = UdfDefinition.fromWorkerScript(request.getScript());
      Workers.Worker w = record(tenant, name, request);
      WorkerOptions options = WorkerOptions.parse(w.options(), sizes, defaultAutoSuspend);
      Workers.Worker current =
          workers.resumeIfSuspended(tenant, w, options.autoResume(), clock.instant());
      if (definition.imports().isEmpty()) {
        serveUdf(tenant, name, definition, options, current, request, out, t0);
        return;
      }
      // Telling an import's content may ask its URL (when Kiln has not seen it within a second):
      // never on the event loop.
      blocking.execute(
          Context.current()
              .wrap(
                  () -> {
                    try {
                      serveUdf(
                          tenant,
                          name,
                          tagged(tenant, definition),
                          options,
                          current,
                          request,
                          out,
                          t0);
                    } catch (KilnException e) {
                      reject(out, "CreateWorker", request.getTenantId(), e);
                    } catch (InterruptedException e) {
                      Thread.currentThread().interrupt();
                      reject(
                          out,
                          "CreateWorker",
                          request.getTenantId(),
                          new KilnException(ErrorCode.SHUTTING_DOWN, "Kiln is shutting down"));
                    } catch (RuntimeException e) {
                      internal(out, "CreateWorker", request.getTenantId(), e);
                    }
                  }));
    } catch (KilnException e) {
      reject(out, "CreateWorker", request.getTenantId(), e);
    } catch (RuntimeException e) {
      internal(out, "CreateWorker", request.getTenantId(), e);
    }
  }

  /**
   * The definition with each import's content identity as its tag (this wire carries none), so that
   * a re-uploaded import makes another UDF resource.
   */
  private UdfDefinition tagged(Tenant tenant, UdfDefinition definition)
      throws KilnException, InterruptedException {
    List<StagedImport> tagged = new ArrayList<>();
    for (StagedImport imp : definition.imports()) {
      tagged.add(
          new StagedImport(imp.location(), imp.url(), imp.headers(), importTags.tag(tenant, imp)));
    }
    return definition.withImports(tagged);
  }

  /** Serves a UDF's definition as ApplyUdfResource would, and answers with its worker. */
  private void serveUdf(
      Tenant tenant,
      String name,
      UdfDefinition definition,
      WorkerOptions options,
      Workers.Worker current,
      CreateWorkerRequest request,
      StreamObserver<CreateWorkerResponse> out,
      long t0)
      throws KilnException {
    requests.request(
        tenant,
        name,
        definition,
        options.sizing(serverSizing),
        udfEnv.get(tenant, name),
        egress.forWorker(tenant, name, options.egress()),
        new UdfRequests.Answer() {
          @Override
          public void ready(ContentKey key, Map<String, String> headers, boolean isHot) {
            (isHot ? hot : cold).increment();
            Workers.Worker now = current;
            if (!key.hex().equals(current.key())) {
              Workers.Worker updated =
                  workers.update(
                      tenant, name, x -> x == null ? null : x.withKey(key.hex(), clock.instant()));
              now = updated == null ? current : updated;
            }
            finish(
                out,
                CreateWorkerResponse.newBuilder()
                    .setWorker(toProto(now))
                    .setEndpoint(endpoint)
                    .putAllHeaders(headers)
                    .build());
            createTimer.record(System.nanoTime() - t0, TimeUnit.NANOSECONDS);
          }

          @Override
          public void failed(KilnException e) {
            reject(out, "CreateWorker", request.getTenantId(), e);
          }
        });
  }

  /**
   * The worker the request names: made with the request's tags and options when there is none
   * (CREATE WORKER, or a UDF's first query), else the existing one when the request says IF NOT
   * EXISTS (a UDF then runs with its worker's options).
   */
  private Workers.Worker record(Tenant tenant, String name, CreateWorkerRequest request)
      throws KilnException {
    Map<String, String> options = userOptions(request.getOptionsMap());
    WorkerOptions.parse(options, sizes, defaultAutoSuspend);
    Workers.Worker[] existing = new Workers.Worker[1];
    Workers.Worker w =
        workers.update(
            tenant,
            name,
            old -> {
              existing[0] = old;
              return old != null
                  ? old
                  : Workers.Worker.create(name, request.getTagsMap(), options, clock.instant());
            });
    if (existing[0] != null && !request.getIfNotExists()) {
      throw new KilnException(
          ErrorCode.WORKER_EXISTS,
          "worker " + name + " exists already; use CREATE WORKER IF NOT EXISTS, or ALTER WORKER");
    }
    if (existing[0] == null) {
      log.info("worker {} tenant={} created with options {}", name, tenant, options);
    }
    return w;
  }

  @Override
  public void alterWorker(AlterWorkerRequest request, StreamObserver<AlterWorkerResponse> out) {
    try {
      Tenant tenant = tenant(request.getTenantId());
      String name = name(request.getName());
      Workers.Worker before = workers.get(tenant, name).orElseThrow(() -> notFound(name));
      Map<String, String> tags = new TreeMap<>(before.tags());
      tags.putAll(request.getSetTagsMap());
      request.getUnsetTagsList().forEach(tags::remove);
      Map<String, String> options = new TreeMap<>(before.options());
      options.putAll(userOptions(request.getSetOptionsMap()));
      request.getUnsetOptionsList().forEach(options::remove);
      WorkerOptions.parse(options, sizes, defaultAutoSuspend);
      Workers.State state =
          switch (request.getStateAction()) {
            case Suspend -> Workers.State.SUSPENDED;
            case Resume -> Workers.State.RUNNING;
            default -> before.state();
          };
      Workers.Worker after =
          workers.update(
              tenant,
              name,
              old ->
                  old == null
                      ? null
                      : old.with(tags, options, clock.instant()).withState(state, clock.instant()));
      if (after == null) {
        throw notFound(name);
      }
      if (state == Workers.State.SUSPENDED && before.state() != Workers.State.SUSPENDED) {
        stopSandboxes(tenant, after);
        log.info("worker {} tenant={} suspended: its sandboxes are stopped", name, tenant);
      }
      out.onNext(AlterWorkerResponse.newBuilder().setWorker(toProto(after)).build());
      out.onCompleted();
    } catch (KilnException e) {
      reject(out, "AlterWorker", request.getTenantId(), e);
    } catch (RuntimeException e) {
      internal(out, "AlterWorker", request.getTenantId(), e);
    }
  }

  @Override
  public void dropWorker(DropWorkerRequest request, StreamObserver<DropWorkerResponse> out) {
    try {
      Tenant tenant = tenant(request.getTenantId());
      String name = name(request.getName());
      Workers.Worker[] dropped = new Workers.Worker[1];
      workers.update(
          tenant,
          name,
          old -> {
            dropped[0] = old;
            return null;
          });
      if (dropped[0] == null && !request.getIfExists()) {
        throw notFound(name);
      }
      if (dropped[0] != null) {
        stopSandboxes(tenant, dropped[0]);
        requests.forgetOwned(tenant, name);
        log.info("worker {} tenant={} dropped", name, tenant);
      }
      out.onNext(DropWorkerResponse.getDefaultInstance());
      out.onCompleted();
    } catch (KilnException e) {
      reject(out, "DropWorker", request.getTenantId(), e);
    } catch (RuntimeException e) {
      internal(out, "DropWorker", request.getTenantId(), e);
    }
  }

  @Override
  public void listWorkers(ListWorkersRequest request, StreamObserver<ListWorkersResponse> out) {
    try {
      Tenant tenant = tenant(request.getTenantId());
      ListWorkersResponse.Builder response = ListWorkersResponse.newBuilder();
      workers.list(tenant).forEach(w -> response.addWorkers(toProto(w)));
      out.onNext(response.build());
      out.onCompleted();
    } catch (KilnException e) {
      reject(out, "ListWorkers", request.getTenantId(), e);
    } catch (RuntimeException e) {
      internal(out, "ListWorkers", request.getTenantId(), e);
    }
  }

  /**
   * Another Kiln replica changed or dropped the tenant's worker {@code name} (--kubernetes): this
   * replica's sandboxes of a worker now suspended or gone stop, and a dropped worker's UDFs are
   * forgotten here as they were there.
   */
  void changedElsewhere(Tenant tenant, String name) {
    Optional<Workers.Worker> w = workers.get(tenant, name);
    if (w.isEmpty()) {
      int stopped = registry.evictOwned(tenant, name, null);
      int forgotten = requests.forgetOwnedHere(tenant, name);
      if (stopped + forgotten > 0) {
        log.info(
            "worker {} tenant={} is dropped (seen in the cluster); here {} sandbox(es) stopped, {}"
                + " UDF(s) forgotten",
            name,
            tenant,
            stopped,
            forgotten);
      }
    } else if (w.get().state() == Workers.State.SUSPENDED) {
      int stopped = registry.evictOwned(tenant, name, null);
      if (stopped > 0) {
        log.info(
            "worker {} tenant={} is suspended (seen in the cluster); {} sandbox(es) stopped here",
            name,
            tenant,
            stopped);
      }
    }
  }

  /** Stops the sandboxes of every version of the worker's UDF (its images stay). */
  private void stopSandboxes(Tenant tenant, Workers.Worker w) {
    registry.evictOwned(tenant, w.name(), null);
  }

  /**
   * The request's tenant: {@code tenant_id}, which must agree with the call's {@code
   * x-databend-tenant} header when there is one.
   */
  private static Tenant tenant(String tenantId) throws KilnException {
    Tenant tenant = Tenant.fromHeader(tenantId);
    String header = CallMetadata.TENANT.get();
    if (header != null && !header.isBlank() && !Tenant.fromHeader(header).equals(tenant)) {
      throw new KilnException(
          ErrorCode.TENANT_MISMATCH,
          "the request is for tenant '"
              + tenant
              + "' but the call comes from tenant '"
              + header
              + "'; a tenant can only manage its own workers");
    }
    return tenant;
  }

  private static String name(String name) throws KilnException {
    if (name.isBlank()) {
      throw new KilnException(ErrorCode.INVALID_CALL, "the request names no worker");
    }
    return name;
  }

  /** The options as the user gave them; {@value #STATE_OPTION} is Kiln's to show, not to set. */
  private static Map<String, String> userOptions(Map<String, String> raw) throws KilnException {
    Map<String, String> out = new HashMap<>();
    for (Map.Entry<String, String> e : raw.entrySet()) {
      if (e.getKey().toLowerCase(Locale.ROOT).equals(STATE_OPTION)) {
        throw new KilnException(
            ErrorCode.INVALID_WORKER_OPTION,
            "'state' shows whether a worker runs and cannot be set; use ALTER WORKER NAME SUSPEND"
                + " or RESUME");
      }
      out.put(e.getKey(), e.getValue());
    }
    return out;
  }

  private static KilnException notFound(String name) {
    return new KilnException(
        ErrorCode.WORKER_NOT_FOUND, "there is no worker " + name + "; see SHOW WORKERS");
  }

  /** A worker as Query's SHOW WORKERS prints it; its state shows as option {@code state}. */
  static dev.kiln.controlplane.proto.resource.Worker toProto(Workers.Worker w) {
    Map<String, String> options = new TreeMap<>(w.options());
    options.put(STATE_OPTION, w.state().name().toLowerCase(Locale.ROOT));
    return dev.kiln.controlplane.proto.resource.Worker.newBuilder()
        .setName(w.name())
        .putAllTags(w.tags())
        .putAllOptions(options)
        .setCreatedAt(w.createdAt())
        .setUpdatedAt(w.updatedAt())
        .build();
  }

  private static <T> void finish(StreamObserver<T> out, T response) {
    try {
      out.onNext(response);
      out.onCompleted();
    } catch (RuntimeException e) {
      log.debug("WorkerService answer not delivered: {}", e.toString());
    }
  }

  private void reject(StreamObserver<?> out, String method, String tenant, KilnException e) {
    rejected.increment();
    log.info("{} rejected for tenant={}: {}", method, tenant, e.getMessage());
    out.onError(GrpcErrors.toStatus(e));
  }

  private void internal(StreamObserver<?> out, String method, String tenant, RuntimeException e) {
    rejected.increment();
    log.error("{} failed for tenant={}", method, tenant, e);
    out.onError(
        GrpcErrors.toStatus(
            new KilnException(
                ErrorCode.INTERNAL, "internal error in Kiln (logged on the server)")));
  }
}
