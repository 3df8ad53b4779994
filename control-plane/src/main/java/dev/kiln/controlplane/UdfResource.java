package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.image.Runtimes;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.UdfHandle;
import dev.kiln.worker.UdfSignature;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;

/**
 * One tenant's UDF resource: its definition and runtime, and once the provisioning pipeline is
 * done, what it made ({@link Provisioned}) or why it failed. Sandboxes are per tenant (never shared
 * across tenants); images are shared by key.
 */
final class UdfResource implements UdfHandle, AutoCloseable {

  /** How long a failure caused by the UDF itself is remembered before provisioning again. */
  static final Duration USER_FAILURE_MEMORY = Duration.ofSeconds(60);

  final Tenant tenant;
  final ContentKey key;
  final UdfDefinition definition;
  final Runtimes.Runtime runtime;
  final Sizing sizing;

  /** Variables the UDF's processes get ({@code --udf-env}); never logged or shown. */
  final Map<String, String> env;

  /** What it may reach outside its sandbox; none (no network) for most. */
  final UdfEgress egress;

  /** The worker it runs for, or null when it was asked for without a name (ApplyUdfResource). */
  final String owner;

  final Instant created;

  /** Where its provisioning is (the pipeline moves it along). */
  final UdfProgress progress = new UdfProgress();

  /**
   * Its image in the registry ({@code --registry}) by digest, once pushed; empty when there is no
   * registry or its image could not be built.
   */
  final CompletableFuture<Optional<String>> pushedImage = new CompletableFuture<>();

  private final InstantSource clock;
  private final UdfSignature signature;
  private final CompletableFuture<RunnerPool> ready = new CompletableFuture<>();
  private final AtomicBoolean closed = new AtomicBoolean();
  private volatile Provisioned provisioned;

  /** Sandboxes added while calls queued ({@link Scaler}), beside the first one. */
  private final List<Provisioned> extra = new CopyOnWriteArrayList<>();

  private volatile Consumer<UdfResource> onAllBusy = r -> {};
  private volatile Instant readyAt;
  private volatile Instant failedAt;

  UdfResource(
      Tenant tenant,
      ContentKey key,
      UdfDefinition definition,
      Runtimes.Runtime runtime,
      Sizing sizing,
      Map<String, String> env,
      UdfEgress egress,
      String owner,
      InstantSource clock) {
    this.tenant = tenant;
    this.key = key;
    this.definition = definition;
    this.runtime = runtime;
    this.sizing = sizing;
    this.env = Map.copyOf(env);
    this.egress = egress;
    this.owner = owner;
    this.clock = clock;
    this.created = clock.instant();
    this.signature = UdfSignature.of(definition);
  }

  @Override
  public UdfSignature signature() {
    return signature;
  }

  @Override
  public CompletableFuture<RunnerPool> ready() {
    return ready;
  }

  /**
   * The least busy of this resource's sandboxes; when every one is busy, {@code onAllBusy} is told
   * (it may add a sandbox) and the batch waits for a runner of the least busy.
   */
  @Override
  public RunnerPool next(RunnerPool first) {
    RunnerPool best = first;
    double bestLoad = first.load();
    for (Provisioned p : extra) {
      double l = p.pool().load();
      if (l < bestLoad && p.pool().isHealthy()) {
        best = p.pool();
        bestLoad = l;
      }
    }
    if (bestLoad >= 1.0) {
      onAllBusy.accept(this);
    }
    return best;
  }

  /** Who hears when every sandbox of this resource is busy. */
  void onAllBusy(Consumer<UdfResource> listener) {
    this.onAllBusy = listener;
  }

  /** Sandboxes this resource runs in: the first one and the ones added. */
  int sandboxCount() {
    return (provisioned == null ? 0 : 1) + extra.size();
  }

  /** The sandboxes added beside the first one. */
  List<Provisioned> extraSandboxes() {
    return List.copyOf(extra);
  }

  /** Adds a sandbox (or stops it at once when the resource was stopped meanwhile). */
  void addSandbox(Provisioned p) {
    extra.add(p);
    if (closed.get() && extra.remove(p)) {
      p.pool().close();
      p.sandbox().close();
    }
  }

  /** Stops an added sandbox. */
  void removeSandbox(Provisioned p) {
    if (extra.remove(p)) {
      p.pool().close();
      p.sandbox().close();
    }
  }

  /**
   * Adds Kiln's own line about the UDF (a refused outbound connection) to what {@code kiln logs}
   * shows of it; only the server's log has it while the UDF is starting.
   */
  void note(String line) {
    Provisioned p = provisioned;
    if (p != null) {
      p.pool().note(line);
    }
  }

  /** How long ago the resource was first asked for. */
  Duration age() {
    return Duration.between(created, clock.instant());
  }

  /** What the pipeline made, once it is done. */
  Optional<Provisioned> provisioned() {
    return Optional.ofNullable(provisioned);
  }

  /**
   * When the resource last did something: its last call, or when it became ready; empty while it is
   * starting or when it failed.
   */
  Optional<Instant> lastActivity() {
    Provisioned p = provisioned;
    Instant ready = readyAt;
    if (p == null || ready == null || isClosed()) {
      return Optional.empty();
    }
    Instant last = ready;
    for (Provisioned q : all(p)) {
      Instant call = q.pool().stats().lastRequestTime();
      if (call != null && call.isAfter(last)) {
        last = call;
      }
    }
    return Optional.of(last);
  }

  private List<Provisioned> all(Provisioned first) {
    List<Provisioned> out = new ArrayList<>(extra.size() + 1);
    out.add(first);
    out.addAll(extra);
    return out;
  }

  /** True while a batch is being computed. */
  boolean isBusy() {
    Provisioned p = provisioned;
    return p != null && all(p).stream().anyMatch(q -> q.pool().stats().inFlight() > 0);
  }

  /** The sandbox, once the pipeline is done. */
  Optional<Sandbox> sandbox() {
    return provisioned().map(Provisioned::sandbox);
  }

  /** The pipeline is done: calls go to its runners (or, when closed meanwhile, it is stopped). */
  void complete(Provisioned p) {
    readyAt = clock.instant();
    provisioned = p;
    if (closed.get() || !ready.complete(p.pool())) {
      p.pool().close();
      p.sandbox().close();
    }
  }

  /** The pipeline failed; calls and Apply answer with this error. */
  void fail(KilnException e) {
    failedAt = clock.instant();
    ready.completeExceptionally(e);
  }

  /** The failure, when provisioning failed. */
  KilnException failure() {
    if (!ready.isCompletedExceptionally()) {
      return null;
    }
    try {
      ready.join();
      return null;
    } catch (CompletionException e) {
      return e.getCause() instanceof KilnException k
          ? k
          : new KilnException(ErrorCode.INTERNAL, String.valueOf(e.getCause()));
    }
  }

  /**
   * True when this resource cannot serve and should be provisioned again: it failed for a reason
   * other than the UDF's own definition or code (those are answered at once for {@link
   * #USER_FAILURE_MEMORY} instead of rebuilding on every query), or its sandbox stopped.
   */
  boolean isStale() {
    if (closed.get()) {
      return true;
    }
    KilnException f = failure();
    if (f != null) {
      return !remembered(f.code())
          || Duration.between(failedAt, clock.instant()).compareTo(USER_FAILURE_MEMORY) > 0;
    }
    Provisioned p = provisioned;
    return p != null && !p.sandbox().isRunning();
  }

  /**
   * Failures caused by the UDF itself, which asking again cannot change: its code, its packages.
   * Anything else (a stage that failed, an index that was down, a sandbox that died) is retried.
   */
  static boolean remembered(ErrorCode code) {
    return code.isUserError() && code != ErrorCode.IMPORT_FAILED;
  }

  boolean isClosed() {
    return closed.get();
  }

  /** Stops the runners and the sandbox; calls waiting for them fail. */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    ready.completeExceptionally(
        new KilnException(
            ErrorCode.SANDBOX_UNAVAILABLE,
            "the UDF's sandbox was stopped; run the query again to get a new one"));
    Provisioned p = provisioned;
    if (p != null) {
      p.pool().close();
      p.sandbox().close();
    }
    for (Provisioned q : extra) {
      removeSandbox(q);
    }
  }
}
