package dev.kiln.controlplane;

import dev.kiln.image.BuiltImage;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.resolver.ContentKey;
import dev.kiln.resolver.RuntimeSpec;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.UdfException;
import dev.kiln.worker.UdfHandle;
import dev.kiln.worker.UdfSignature;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * One tenant's UDF resource: its spec, and the image, sandbox and runners that serve it once the
 * provisioning pipeline has placed them. Sandboxes are per tenant (never shared across tenants);
 * images are shared by content key.
 */
final class UdfResource implements UdfHandle, AutoCloseable {
  final String tenant;
  final ContentKey key;
  final UdfRequest request;
  final RuntimeSpec spec;
  final Runtimes.Runtime runtime;
  private final UdfSignature signature;
  private final CompletableFuture<RunnerPool> ready = new CompletableFuture<>();
  private final AtomicBoolean closed = new AtomicBoolean();
  final long createdNanos = System.nanoTime();
  volatile BuiltImage image;
  volatile Sandbox sandbox;
  volatile long inputsNanos;
  volatile long buildNanos;
  volatile long sandboxNanos;
  volatile long runnersNanos;
  volatile long readyNanos;
  volatile long failedNanos;

  /** The error code to answer ApplyUdfResource with, when the pipeline knows a precise one. */
  volatile ErrorCode failureCode;

  /** How long a failure caused by the UDF itself is remembered before provisioning again. */
  static final long USER_FAILURE_MEMORY_NANOS = TimeUnit.SECONDS.toNanos(60);

  UdfResource(String tenant, ContentKey key, UdfRequest request) {
    this.tenant = tenant;
    this.key = key;
    this.request = request;
    this.spec = request.spec();
    this.runtime = request.runtime();
    this.signature = UdfSignature.of(spec);
  }

  @Override
  public UdfSignature signature() {
    return signature;
  }

  @Override
  public CompletableFuture<RunnerPool> ready() {
    return ready;
  }

  ProvisioningTimings timings() {
    return new ProvisioningTimings(
        buildNanos / 1e6,
        sandboxNanos / 1e6,
        runnersNanos / 1e6,
        (readyNanos - createdNanos) / 1e6);
  }

  void markReady(RunnerPool pool) {
    readyNanos = System.nanoTime();
    if (closed.get() || !ready.complete(pool)) {
      pool.close();
    }
  }

  void fail(UdfException e) {
    fail(e, null);
  }

  void fail(UdfException e, ErrorCode code) {
    failureCode = code;
    failedNanos = System.nanoTime();
    ready.completeExceptionally(e);
  }

  /** The failure, when provisioning failed. */
  UdfException failure() {
    if (!ready.isCompletedExceptionally()) {
      return null;
    }
    try {
      ready.join();
      return null;
    } catch (CompletionException e) {
      return e.getCause() instanceof UdfException u
          ? u
          : new UdfException(UdfException.Kind.INTERNAL, String.valueOf(e.getCause()));
    }
  }

  /**
   * True when this resource cannot serve and should be provisioned again: it failed for a reason
   * other than the UDF's own code, or its sandbox stopped.
   */
  boolean isStale() {
    if (closed.get()) {
      return true;
    }
    UdfException f = failure();
    if (f != null) {
      // The UDF's own errors (its code does not load, its packages do not resolve) are answered
      // at once for a while instead of rebuilding on every query; anything else is retried.
      return f.kind() != UdfException.Kind.LOAD_FAILED
          || System.nanoTime() - failedNanos > USER_FAILURE_MEMORY_NANOS;
    }
    Sandbox s = sandbox;
    return ready.isDone() && s != null && !s.isRunning();
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
        new UdfException(
            UdfException.Kind.UNAVAILABLE,
            "the UDF's sandbox was stopped; run the query again to get a new one"));
    if (ready.isDone() && !ready.isCompletedExceptionally()) {
      ready.join().close();
    }
    Sandbox s = sandbox;
    if (s != null) {
      s.close();
    }
  }
}
