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
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.atomic.AtomicBoolean;

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

  /** The worker it runs for, or null when it was asked for without a name (ApplyUdfResource). */
  final String owner;

  final Instant created;
  private final InstantSource clock;
  private final UdfSignature signature;
  private final CompletableFuture<RunnerPool> ready = new CompletableFuture<>();
  private final AtomicBoolean closed = new AtomicBoolean();
  private volatile Provisioned provisioned;
  private volatile Instant readyAt;
  private volatile Instant failedAt;

  UdfResource(
      Tenant tenant,
      ContentKey key,
      UdfDefinition definition,
      Runtimes.Runtime runtime,
      Sizing sizing,
      Map<String, String> env,
      String owner,
      InstantSource clock) {
    this.tenant = tenant;
    this.key = key;
    this.definition = definition;
    this.runtime = runtime;
    this.sizing = sizing;
    this.env = Map.copyOf(env);
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
    Instant call = p.pool().stats().lastRequestTime();
    return Optional.of(call != null && call.isAfter(ready) ? call : ready);
  }

  /** True while a batch is being computed. */
  boolean isBusy() {
    Provisioned p = provisioned;
    return p != null && p.pool().stats().inFlight() > 0;
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
  }
}
