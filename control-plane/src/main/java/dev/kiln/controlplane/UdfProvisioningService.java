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
import io.grpc.stub.StreamObserver;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
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

  private final UdfRequests requests;
  private final Sizing sizing;
  private final EgressPolicies egress;
  private final String endpoint;
  private final Timer applyTimer;
  private final Counter hot;
  private final Counter cold;
  private final Counter rejected;

  /**
   * @param requests what both front doors share
   * @param sizing the sandbox size of every UDF asked for here (the server's own)
   * @param egress what the operator lets each UDF reach ({@code --egress-policy})
   * @param endpoint the Flight endpoint answered with
   */
  UdfProvisioningService(
      UdfRequests requests,
      Sizing sizing,
      EgressPolicies egress,
      String endpoint,
      MeterRegistry meters) {
    this.requests = requests;
    this.sizing = sizing;
    this.egress = egress;
    this.endpoint = endpoint;
    this.applyTimer =
        Timer.builder("kiln.apply")
            .description("ApplyUdfResource latency")
            .publishPercentiles(0.5, 0.99)
            .register(meters);
    RequestCounters counters =
        RequestCounters.register(meters, "kiln.apply.requests", "ApplyUdfResource");
    this.hot = counters.hot();
    this.cold = counters.cold();
    this.rejected = counters.rejected();
  }

  @Override
  public void applyUdfResource(
      ApplyUdfResourceRequest request, StreamObserver<ApplyUdfResourceResponse> out) {
    long t0 = System.nanoTime();
    String tenantHeader = CallMetadata.TENANT.get();
    try {
      Tenant tenant = Tenant.fromHeader(tenantHeader);
      UdfDefinition definition = UdfDefinition.fromSpec(request.getSpec(), imports(request));
      requests.request(
          tenant,
          null,
          definition,
          sizing,
          UdfEnv.Entry.NONE,
          egress.forUdf(tenant, definition.handler()),
          new UdfRequests.Answer() {
            @Override
            public void ready(ContentKey key, Map<String, String> headers, boolean isHot) {
              (isHot ? hot : cold).increment();
              finish(
                  out,
                  ApplyUdfResourceResponse.newBuilder()
                      .setEndpoint(endpoint)
                      .putAllHeaders(headers)
                      .build(),
                  t0);
            }

            @Override
            public void failed(KilnException e) {
              reject(out, tenantHeader, e);
            }
          });
    } catch (KilnException e) {
      reject(out, tenantHeader, e);
    } catch (RuntimeException e) {
      rejected.increment();
      log.error("ApplyUdfResource failed for tenant={}", tenantHeader, e);
      out.onError(
          GrpcErrors.toStatus(
              new KilnException(
                  ErrorCode.INTERNAL, "internal error in Kiln (logged on the server)")));
    }
  }

  private void reject(
      StreamObserver<ApplyUdfResourceResponse> out, String tenantHeader, KilnException e) {
    rejected.increment();
    log.info("ApplyUdfResource rejected for tenant={}: {}", tenantHeader, e.getMessage());
    out.onError(GrpcErrors.toStatus(e));
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
