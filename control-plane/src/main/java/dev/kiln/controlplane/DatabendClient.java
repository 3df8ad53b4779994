package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.kiln.controlplane.proto.resource.CreateWorkerRequest;
import dev.kiln.controlplane.proto.resource.CreateWorkerResponse;
import dev.kiln.controlplane.proto.resource.ListWorkersRequest;
import dev.kiln.controlplane.proto.resource.Worker;
import dev.kiln.controlplane.proto.resource.WorkerServiceGrpc;
import dev.kiln.controlplane.proto.udf.ApplyUdfResourceRequest;
import dev.kiln.controlplane.proto.udf.ApplyUdfResourceResponse;
import dev.kiln.controlplane.proto.udf.UdfImport;
import dev.kiln.controlplane.proto.udf.UdfServiceGrpc;
import dev.kiln.definition.DataType;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.MetadataUtils;
import java.net.URI;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.flight.Location;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.VectorSchemaRoot;

/**
 * A client that talks to Kiln the way Databend Query does: ApplyUdfResource with tenant metadata
 * and a 5 s deadline, then DoExchange on a new connection with the returned headers. Used by {@code
 * kiln apply}/{@code kiln call}, the tests and the benchmarks.
 */
public final class DatabendClient implements AutoCloseable {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Metadata.Key<String> CLIENT_VERSION =
      Metadata.Key.of("udf_client_version", Metadata.ASCII_STRING_MARSHALLER);
  private static final Metadata.Key<String> WORKER_CLIENT_VERSION =
      Metadata.Key.of("worker_client_version", Metadata.ASCII_STRING_MARSHALLER);

  /** What ApplyUdfResource returned, plus the content key Kiln reports in a response header. */
  public record Resource(String endpoint, Map<String, String> headers, String key) {}

  /** One staged import as Databend sends it. */
  public record Import(String location, String url, String tag) {}

  private final ManagedChannel channel;

  /** A client of the provisioning API at {@code host:port}. */
  public DatabendClient(String target) {
    this.channel = NettyChannelBuilder.forTarget(target).usePlaintext().build();
  }

  /** Calls ApplyUdfResource; throws {@link io.grpc.StatusRuntimeException} on an error status. */
  public Resource apply(String tenant, String spec, List<Import> imports, Duration deadline) {
    Metadata headers = new Metadata();
    headers.put(CallMetadata.TENANT_HEADER, tenant);
    headers.put(CLIENT_VERSION, "v1");
    AtomicReference<Metadata> responseHeaders = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    ApplyUdfResourceRequest.Builder request = ApplyUdfResourceRequest.newBuilder().setSpec(spec);
    for (Import i : imports) {
      request.addImports(
          UdfImport.newBuilder().setLocation(i.location()).setUrl(i.url()).setTag(i.tag()));
    }
    ApplyUdfResourceResponse response =
        UdfServiceGrpc.newBlockingStub(channel)
            .withInterceptors(
                MetadataUtils.newAttachHeadersInterceptor(headers),
                MetadataUtils.newCaptureMetadataInterceptor(responseHeaders, trailers))
            .withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS)
            .applyUdfResource(request.build());
    Metadata md = responseHeaders.get();
    return new Resource(
        response.getEndpoint(),
        new TreeMap<>(response.getHeadersMap()),
        md == null ? null : md.get(CallMetadata.KEY_HEADER));
  }

  /** {@link #apply(String, String, List, Duration)} with no imports and Databend's 5 s deadline. */
  public Resource apply(String tenant, String spec) {
    return apply(tenant, spec, List.of(), Duration.ofSeconds(5));
  }

  /**
   * Calls CreateWorker as Databend Query does for a UDF (type {@code udf}, the rendered script, IF
   * NOT EXISTS); throws {@link io.grpc.StatusRuntimeException} on an error status.
   */
  public Resource createWorker(String tenant, String name, String script, Duration deadline) {
    AtomicReference<Metadata> responseHeaders = new AtomicReference<>();
    AtomicReference<Metadata> trailers = new AtomicReference<>();
    CreateWorkerResponse response =
        workers(tenant, deadline)
            .withInterceptors(
                MetadataUtils.newCaptureMetadataInterceptor(responseHeaders, trailers))
            .createWorker(
                CreateWorkerRequest.newBuilder()
                    .setTenantId(tenant)
                    .setName(name)
                    .setIfNotExists(true)
                    .setType("udf")
                    .setScript(script)
                    .build());
    Metadata md = responseHeaders.get();
    return new Resource(
        response.getEndpoint(),
        new TreeMap<>(response.getHeadersMap()),
        md == null ? null : md.get(CallMetadata.KEY_HEADER));
  }

  /** The tenant's workers, as SHOW WORKERS asks for them. */
  public List<Worker> listWorkers(String tenant, Duration deadline) {
    return workers(tenant, deadline)
        .listWorkers(ListWorkersRequest.newBuilder().setTenantId(tenant).build())
        .getWorkersList();
  }

  /** A WorkerService stub that sends the metadata Query sends. */
  public WorkerServiceGrpc.WorkerServiceBlockingStub workers(String tenant, Duration deadline) {
    Metadata headers = new Metadata();
    headers.put(CallMetadata.TENANT_HEADER, tenant);
    headers.put(WORKER_CLIENT_VERSION, "v1");
    return WorkerServiceGrpc.newBlockingStub(channel)
        .withInterceptors(MetadataUtils.newAttachHeadersInterceptor(headers))
        .withDeadlineAfter(deadline.toNanos(), TimeUnit.NANOSECONDS);
  }

  /**
   * Calls a UDF with one batch built from JSON rows and returns the result rows ({@code
   * [[v],[v]]}). Throws {@link org.apache.arrow.flight.FlightRuntimeException} on an error status.
   *
   * @param headers call headers: every header ApplyUdfResource returned, plus any extra ones; the
   *     Databend headers (tenant, function, query id) are added unless present
   */
  public static ArrayNode call(
      BufferAllocator allocator,
      String endpoint,
      Map<String, String> headers,
      String tenant,
      String handler,
      List<DataType> inputTypes,
      JsonNode rows,
      Duration timeout)
      throws InterruptedException {
    Map<String, String> all = new TreeMap<>();
    all.put("x-databend-tenant", tenant);
    all.put("x-databend-function", handler);
    all.put("x-databend-function-handler", handler);
    all.put("x-databend-query-id", "kiln-client");
    headers.forEach((k, v) -> all.put(k.toLowerCase(Locale.ROOT), v));
    FlightCallHeaders callHeaders = new FlightCallHeaders();
    all.forEach(callHeaders::insert);
    Location location = location(endpoint);
    ArrayNode out = JSON.createArrayNode();
    try (FlightClient client = FlightClient.builder(allocator, location).build();
        VectorSchemaRoot input = ArrowRows.toBatch(inputTypes, rows, allocator);
        FlightClient.ExchangeReaderWriter exchange =
            client.doExchange(
                FlightDescriptor.path(handler),
                new HeaderCallOption(callHeaders),
                CallOptions.timeout(timeout.toMillis(), TimeUnit.MILLISECONDS))) {
      exchange.getWriter().start(input);
      exchange.getWriter().putNext();
      exchange.getWriter().completed();
      FlightStream results = exchange.getReader();
      while (results.next()) {
        VectorSchemaRoot root = results.getRoot();
        if (root.getFieldVectors().isEmpty()) {
          throw new IllegalStateException("the endpoint returned a batch with no columns");
        }
        ArrowRows.appendRows(root.getVector(0), out);
      }
    } catch (InterruptedException | RuntimeException e) {
      throw e;
    } catch (Exception e) {
      throw new IllegalStateException("closing the Flight client failed: " + e, e);
    }
    return out;
  }

  /** The Flight location of an endpoint ApplyUdfResource returned ({@code https://} is TLS). */
  static Location location(String endpoint) {
    URI uri = URI.create(endpoint);
    return "https".equals(uri.getScheme())
        ? Location.forGrpcTls(uri.getHost(), uri.getPort() < 0 ? 443 : uri.getPort())
        : Location.forGrpcInsecure(uri.getHost(), uri.getPort() < 0 ? 80 : uri.getPort());
  }

  /** Parses a JSON text (rows for {@link #call}). */
  public static JsonNode json(String text) {
    return ArrowRows.parse(text);
  }

  @Override
  public void close() throws InterruptedException {
    channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
  }
}
