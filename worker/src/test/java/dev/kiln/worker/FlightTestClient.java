package dev.kiln.worker;

import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.arrow.flight.CallOption;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * A real Flight client for the endpoint that also records the raw gRPC status of the last call
 * (Flight folds some codes, e.g. FAILED_PRECONDITION, into others).
 */
final class FlightTestClient implements AutoCloseable {

  /** What an exchange returned: the result schema and each result batch's values. */
  record Exchange(Schema schema, List<List<Object>> batches) {}

  private final BufferAllocator allocator;
  private final ManagedChannel channel;
  private final FlightClient client;
  private final AtomicReference<Status> lastStatus = new AtomicReference<>();
  private final AtomicBoolean lastHeaders = new AtomicBoolean();

  FlightTestClient(BufferAllocator allocator, int port) {
    this.allocator = allocator;
    this.channel =
        NettyChannelBuilder.forAddress("127.0.0.1", port)
            .usePlaintext()
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .intercept(new StatusRecorder())
            .build();
    this.client = FlightGrpcUtils.createFlightClient(allocator, channel);
  }

  Status lastStatus() {
    return lastStatus.get();
  }

  /** Whether the last call's response headers arrived before it ended (not trailers-only). */
  boolean lastHadHeaders() {
    return lastHeaders.get();
  }

  static CallOption headers(Map<String, String> headers) {
    FlightCallHeaders h = new FlightCallHeaders();
    headers.forEach(h::insert);
    return new HeaderCallOption(h);
  }

  FlightInfo info(String name, Map<String, String> headers) {
    return client.getInfo(FlightDescriptor.path(name), headers(headers));
  }

  /**
   * One DoExchange: for each input batch (one value list per field of {@code schema}, or just a row
   * count for a schema without fields), sends it and reads its result batch.
   */
  Exchange exchange(
      String handler, Map<String, String> headers, Schema schema, List<List<List<?>>> batches)
      throws Exception {
    List<List<Object>> results = new ArrayList<>();
    try (FlightClient.ExchangeReaderWriter x =
            client.doExchange(FlightDescriptor.path(handler), headers(headers));
        VectorSchemaRoot root = VectorSchemaRoot.create(schema, allocator)) {
      x.getWriter().start(root);
      for (List<List<?>> batch : batches) {
        int rows = fill(root, schema, batch);
        x.getWriter().putNext();
        if (!x.getReader().next()) {
          throw new AssertionError("no result batch for an input batch");
        }
        VectorSchemaRoot out = x.getReader().getRoot();
        if (out.getRowCount() != rows) {
          throw new AssertionError("result has " + out.getRowCount() + " rows for " + rows);
        }
        results.add(Vectors.values(out.getVector(0)));
      }
      x.getWriter().completed();
      if (x.getReader().next()) {
        throw new AssertionError("more result batches than input batches");
      }
      return new Exchange(x.getReader().getSchema(), results);
    }
  }

  private int fill(VectorSchemaRoot root, Schema schema, List<List<?>> batch) {
    if (schema.getFields().isEmpty()) {
      int rows = (Integer) batch.get(0).get(0);
      root.setRowCount(rows);
      return rows;
    }
    int rows = batch.get(0).size();
    for (int c = 0; c < schema.getFields().size(); c++) {
      Field f = schema.getFields().get(c);
      try (FieldVector v = Vectors.of(allocator, f.getName(), f.getType(), batch.get(c))) {
        v.makeTransferPair(root.getVector(c)).transfer();
      }
    }
    root.setRowCount(rows);
    return rows;
  }

  @Override
  public void close() throws Exception {
    client.close();
    channel.shutdownNow();
    channel.awaitTermination(10, TimeUnit.SECONDS);
  }

  private final class StatusRecorder implements ClientInterceptor {
    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          lastHeaders.set(false);
          super.start(
              new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
                @Override
                public void onHeaders(Metadata responseHeaders) {
                  lastHeaders.set(true);
                  super.onHeaders(responseHeaders);
                }

                @Override
                public void onClose(Status status, Metadata trailers) {
                  lastStatus.set(status);
                  super.onClose(status, trailers);
                }
              },
              headers);
        }
      };
    }
  }
}
