package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.controlplane.proto.udf.ApplyUdfResourceRequest;
import dev.kiln.controlplane.proto.udf.ApplyUdfResourceResponse;
import dev.kiln.controlplane.proto.udf.UdfImport;
import dev.kiln.controlplane.proto.udf.UdfServiceGrpc;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.StagedImport;
import dev.kiln.definition.Tenant;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.image.Runtimes;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.Tokens;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.stub.StreamObserver;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.time.InstantSource;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code udfproto.UdfService/ApplyUdfResource}: turns the request into a {@link UdfDefinition},
 * checks it, computes its content key and answers with the stable Flight endpoint and a token, at
 * once on the hot path. A never-seen UDF starts the provisioning pipeline; the answer then waits at
 * most {@code apply-wait} (and never past the call's deadline) so that errors in the UDF code come
 * back on this RPC.
 */
final class UdfProvisioningService extends UdfServiceGrpc.UdfServiceImplBase {
  private static final Logger log = LoggerFactory.getLogger(UdfProvisioningService.class);

  private final UdfRegistry registry;
  private final Pipeline pipeline;
  private final Tokens tokens;
  private final String endpoint;
  private final Duration applyWait;
  private final InstantSource clock;
  private final Timer applyTimer;
  private final Counter hot;
  private final Counter cold;
  private final Counter rejected;

  UdfProvisioningService(
      UdfRegistry registry,
      Pipeline pipeline,
      Tokens tokens,
      String endpoint,
      Duration applyWait,
      InstantSource clock,
      MeterRegistry meters) {
    this.registry = registry;
    this.pipeline = pipeline;
    this.tokens = tokens;
    this.endpoint = endpoint;
    this.applyWait = applyWait;
    this.clock = clock;
    this.applyTimer =
        Timer.builder("kiln.apply")
            .description("ApplyUdfResource latency")
            .publishPercentiles(0.5, 0.99)
            .register(meters);
    this.hot = meters.counter("kiln.apply.requests", "result", "hot");
    this.cold = meters.counter("kiln.apply.requests", "result", "cold");
    this.rejected = meters.counter("kiln.apply.requests", "result", "error");
  }

  @Override
  public void applyUdfResource(
      ApplyUdfResourceRequest request, StreamObserver<ApplyUdfResourceResponse> out) {
    long t0 = System.nanoTime();
    String tenantHeader = CallMetadata.TENANT.get();
    try {
      Tenant tenant = Tenant.fromHeader(tenantHeader);
      UdfDefinition definition = UdfDefinition.fromSpec(request.getSpec(), imports(request));
      Runtimes.Runtime runtime = pipeline.check(definition);
      // The request key: what Databend asked for. The package lock and the imports' content are
      // resolved by the pipeline and go into the image's key, so the hot path never waits on an
      // index or a download.
      ContentKey key = definition.key(runtime.digest(), RunnerFiles.version());
      CallMetadata.RESPONSE_KEY.get().set(key.hex());
      UdfRegistry.Obtained obtained =
          registry.obtain(
              tenant, key, () -> new UdfResource(tenant, key, definition, runtime, clock));
      UdfResource resource = obtained.resource();
      ApplyUdfResourceResponse response =
          ApplyUdfResourceResponse.newBuilder()
              .setEndpoint(endpoint)
              .putAllHeaders(Map.of(Tokens.HEADER, tokens.issue(tenant, key)))
              .build();
      if (!obtained.created()) {
        hot.increment();
        KilnException failure = resource.failure();
        if (failure != null) {
          throw failure;
        }
        finish(out, response, t0);
        return;
      }
      cold.increment();
      log.info(
          "udf {} tenant={} handler={}: new, provisioning",
          key.shortForm(),
          tenant,
          definition.handler());
      awaitBriefly(resource, out, response, t0);
    } catch (KilnException e) {
      rejected.increment();
      log.info("ApplyUdfResource rejected for tenant={}: {}", tenantHeader, e.getMessage());
      out.onError(GrpcErrors.toStatus(e));
    } catch (RuntimeException e) {
      rejected.increment();
      log.error("ApplyUdfResource failed for tenant={}", tenantHeader, e);
      out.onError(
          GrpcErrors.toStatus(
              new KilnException(
                  ErrorCode.INTERNAL, "internal error in Kiln (logged on the server)")));
    }
  }

  /**
   * Waits up to apply-wait for a cold resource so a UDF that fails to load is reported on this RPC;
   * otherwise answers with the endpoint, whose calls wait for the sandbox.
   */
  private void awaitBriefly(
      UdfResource resource,
      StreamObserver<ApplyUdfResourceResponse> out,
      ApplyUdfResourceResponse response,
      long t0) {
    long waitNanos = applyWait.toNanos();
    Deadline deadline = Context.current().getDeadline();
    if (deadline != null) {
      // Leave half a second for the answer to travel back.
      waitNanos = Math.min(waitNanos, deadline.timeRemaining(TimeUnit.NANOSECONDS) - 500_000_000L);
    }
    if (waitNanos <= 0) {
      finish(out, response, t0);
      return;
    }
    resource
        .ready()
        .copy()
        .completeOnTimeout(null, waitNanos, TimeUnit.NANOSECONDS)
        .whenComplete(
            (pool, error) -> {
              KilnException failure = resource.failure();
              if (failure != null) {
                rejected.increment();
                out.onError(GrpcErrors.toStatus(failure));
              } else {
                finish(out, response, t0);
              }
            });
  }

  private void finish(
      StreamObserver<ApplyUdfResourceResponse> out, ApplyUdfResourceResponse response, long t0) {
    try {
      out.onNext(response);
      out.onCompleted();
    } catch (RuntimeException e) {
      // The caller gave up (deadline or cancellation) before the answer was ready.
      log.debug("ApplyUdfResource answer not delivered: {}", e.toString());
    }
    applyTimer.record(System.nanoTime() - t0, TimeUnit.NANOSECONDS);
  }

  /** The request's imports: stage location, presigned URL and tag of each. */
  private static List<StagedImport> imports(ApplyUdfResourceRequest request) {
    return request.getImportsList().stream()
        .map((UdfImport imp) -> new StagedImport(imp.getLocation(), imp.getUrl(), imp.getTag()))
        .toList();
  }
}
