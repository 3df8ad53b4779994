package dev.kiln.controlplane;

import dev.kiln.controlplane.proto.udf.ApplyUdfResourceRequest;
import dev.kiln.controlplane.proto.udf.ApplyUdfResourceResponse;
import dev.kiln.controlplane.proto.udf.UdfImport;
import dev.kiln.controlplane.proto.udf.UdfServiceGrpc;
import dev.kiln.resolver.ContentKey;
import dev.kiln.resolver.ContentKeys;
import dev.kiln.resolver.DataType;
import dev.kiln.resolver.HandlerCheck;
import dev.kiln.resolver.Pep723;
import dev.kiln.resolver.Requirement;
import dev.kiln.resolver.RuntimeSpec;
import dev.kiln.resolver.SpecException;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerPool;
import dev.kiln.worker.Tokens;
import dev.kiln.worker.UdfException;
import io.grpc.Context;
import io.grpc.Deadline;
import io.grpc.stub.StreamObserver;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * {@code udfproto.UdfService/ApplyUdfResource}: validates the spec, computes its content key and
 * answers with the stable Flight endpoint and a token, at once on the hot path. A never-seen spec
 * starts the provisioning pipeline; the answer then waits at most {@code apply-wait} (and never
 * past the call's deadline) so that errors in the UDF code come back on this RPC.
 */
final class UdfProvisioningService extends UdfServiceGrpc.UdfServiceImplBase {
  private static final Logger log = LoggerFactory.getLogger(UdfProvisioningService.class);
  static final String DEFAULT_TENANT = "default";

  private final UdfRegistry registry;
  private final Tokens tokens;
  private final String endpoint;
  private final Runtimes runtimes;
  private final KilnConfig config;
  private final Timer applyTimer;
  private final Counter hot;
  private final Counter cold;
  private final Counter rejected;

  UdfProvisioningService(
      UdfRegistry registry,
      Tokens tokens,
      String endpoint,
      Runtimes runtimes,
      KilnConfig config,
      MeterRegistry meters) {
    this.registry = registry;
    this.tokens = tokens;
    this.endpoint = endpoint;
    this.runtimes = runtimes;
    this.config = config;
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
    String tenant = CallMetadata.TENANT.get();
    if (tenant == null || tenant.isBlank()) {
      tenant = DEFAULT_TENANT;
    }
    try {
      UdfRequest udf = validate(request);
      RuntimeSpec spec = udf.spec();
      // The request key: what Databend asked for. The package lock and the imports' content
      // are resolved by the pipeline and go into the image's key, so the hot path never waits
      // on an index or a download.
      ContentKey key =
          ContentKeys.compute(
              spec, udf.importRefs(), udf.runtime().digest(), RunnerFiles.version(), "");
      CallMetadata.RESPONSE_KEY.get().set(key.hex());
      UdfRegistry.Obtained obtained = registry.obtain(tenant, key, udf);
      UdfResource resource = obtained.resource();
      ApplyUdfResourceResponse response =
          ApplyUdfResourceResponse.newBuilder()
              .setEndpoint(endpoint)
              .putAllHeaders(Map.of(Tokens.HEADER, tokens.issue(tenant, key)))
              .build();
      if (!obtained.created()) {
        hot.increment();
        UdfException failure = resource.failure();
        if (failure != null) {
          throw asKilnException(resource, failure);
        }
        finish(out, response, t0);
        return;
      }
      cold.increment();
      log.info(
          "udf {} tenant={} handler={}: new, provisioning",
          key.shortForm(),
          tenant,
          spec.handler());
      awaitBriefly(resource, out, response, t0);
    } catch (KilnException e) {
      rejected.increment();
      log.info("ApplyUdfResource rejected for tenant={}: {}", tenant, e.getMessage());
      out.onError(e.toStatus());
    } catch (RuntimeException e) {
      rejected.increment();
      log.error("ApplyUdfResource failed for tenant={}", tenant, e);
      out.onError(
          new KilnException(ErrorCode.INTERNAL, "internal error in Kiln (logged on the server)")
              .toStatus());
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
    long waitNanos = config.applyWait().toNanos();
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
              UdfException failure = resource.failure();
              if (failure != null) {
                rejected.increment();
                out.onError(asKilnException(resource, failure).toStatus());
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

  /** A provisioning failure known before the answer, as the error the RPC returns. */
  static KilnException asKilnException(UdfResource resource, UdfException failure) {
    if (resource.failureCode != null) {
      return new KilnException(resource.failureCode, failure.getMessage());
    }
    ErrorCode code =
        switch (failure.kind()) {
          case LOAD_FAILED -> ErrorCode.UDF_LOAD_FAILED;
          case BAD_INPUT -> ErrorCode.INVALID_SPEC;
          case UNAVAILABLE, TIMEOUT, RUNNER_CRASHED -> ErrorCode.SANDBOX_UNAVAILABLE;
          default -> ErrorCode.INTERNAL;
        };
    return new KilnException(code, failure.getMessage());
  }

  /** Everything that can be checked without building anything. */
  UdfRequest validate(ApplyUdfResourceRequest request) throws KilnException {
    RuntimeSpec spec;
    try {
      spec = RuntimeSpec.parse(request.getSpec());
      HandlerCheck.requireDefined(spec.code(), spec.handler());
    } catch (SpecException e) {
      ErrorCode code =
          e.getMessage().contains("does not define")
              ? ErrorCode.HANDLER_NOT_DEFINED
              : ErrorCode.INVALID_SPEC;
      throw new KilnException(code, "invalid UDF spec: " + e.getMessage());
    }
    List<DataType> types = new ArrayList<>(spec.inputTypes());
    types.add(spec.resultType());
    for (int i = 0; i < types.size(); i++) {
      try {
        RunnerPool.requireSupported(types.get(i));
      } catch (UdfException e) {
        String field = i < spec.inputTypes().size() ? "input_types[" + i + "]" : "result_type";
        throw new KilnException(
            ErrorCode.UNSUPPORTED_TYPE,
            "invalid UDF spec: field '" + field + "': " + e.getMessage());
      }
    }
    Runtimes.Runtime runtime = runtimes.forVersion(spec.runtimeVersion());
    return new UdfRequest(spec, requirements(spec), stagedImports(spec, request), runtime);
  }

  /** {@code packages} then the code's PEP 723 dependencies, each checked as PEP 508. */
  private static List<String> requirements(RuntimeSpec spec) throws KilnException {
    List<String> out = new ArrayList<>();
    for (int i = 0; i < spec.packages().size(); i++) {
      String raw = spec.packages().get(i);
      try {
        Requirement.parse(raw);
      } catch (SpecException e) {
        throw new KilnException(
            ErrorCode.INVALID_SPEC,
            "invalid UDF spec: " + e.inField("packages[" + i + "]").getMessage());
      }
      out.add(raw);
    }
    List<String> inline;
    try {
      inline = Pep723.dependencies(spec.code());
    } catch (SpecException e) {
      throw new KilnException(
          ErrorCode.INVALID_SPEC,
          "invalid UDF spec: the code's PEP 723 block (# /// script): " + e.getMessage());
    }
    for (String raw : inline) {
      try {
        Requirement.parse(raw);
      } catch (SpecException e) {
        throw new KilnException(
            ErrorCode.INVALID_SPEC,
            "invalid UDF spec: a dependency in the code's PEP 723 block: " + e.getMessage());
      }
      out.add(raw);
    }
    return out;
  }

  /** Each import the spec names, with the URL and tag the request carries for it. */
  private static List<UdfRequest.StagedImport> stagedImports(
      RuntimeSpec spec, ApplyUdfResourceRequest request) throws KilnException {
    Map<String, UdfImport> given = new HashMap<>();
    for (UdfImport imp : request.getImportsList()) {
      given.put(imp.getLocation(), imp);
    }
    List<UdfRequest.StagedImport> out = new ArrayList<>();
    for (String location : spec.imports()) {
      UdfImport imp = given.get(location);
      if (imp == null || imp.getUrl().isBlank()) {
        throw new KilnException(
            ErrorCode.IMPORT_MISMATCH,
            "the spec imports "
                + location
                + " but the request carries no UdfImport (URL and tag) for it");
      }
      out.add(new UdfRequest.StagedImport(location, imp.getUrl(), imp.getTag()));
    }
    return out;
  }
}
