package dev.kiln.worker;

import io.grpc.ConnectivityState;
import io.grpc.ManagedChannel;
import io.grpc.netty.NettyChannelBuilder;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.flight.CallOption;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * The Databend side of {@link ThroughputIT}, run in its own JVM so the endpoint's CPU can be
 * measured apart from the client's: calls {@code add(BIGINT, BIGINT)} the way Databend does (one
 * 65,536-row batch per DoExchange, each on a new connection, several in flight) and prints {@code
 * rows/s=<n>} and its own CPU per batch, both after a warm-up.
 *
 * <pre>ThroughputClient PORT TOKEN TENANT WARMUP_BATCHES BATCHES IN_FLIGHT</pre>
 */
public final class ThroughputClient {

  static final int ROWS = 65_536;

  private ThroughputClient() {}

  public static void main(String[] args) throws Exception {
    int port = Integer.parseInt(args[0]);
    CallOption headers =
        FlightTestClient.headers(Map.of(Tokens.HEADER, args[1], "x-databend-tenant", args[2]));
    int warmup = Integer.parseInt(args[3]);
    int batches = Integer.parseInt(args[4]);
    int inFlight = Integer.parseInt(args[5]);
    try (BufferAllocator allocator = new RootAllocator()) {
      run(allocator, port, headers, warmup, inFlight);
      long cpu = cpuNanos();
      long started = System.nanoTime();
      int done = run(allocator, port, headers, batches, inFlight);
      double seconds = (System.nanoTime() - started) / 1e9;
      System.out.println("rows/s=" + done * (double) ROWS / seconds);
      System.out.println("cpu_ns_per_batch=" + (cpuNanos() - cpu) / (double) done);
    }
  }

  private static int run(
      BufferAllocator allocator, int port, CallOption headers, int batches, int inFlight)
      throws Exception {
    List<Callable<Void>> workers = new ArrayList<>();
    for (int w = 0; w < inFlight; w++) {
      workers.add(
          () -> {
            try (VectorSchemaRoot in = input(allocator)) {
              for (int i = 0; i < batches / inFlight; i++) {
                callOnce(allocator, port, headers, in);
              }
            }
            return null;
          });
    }
    try (ExecutorService threads = Executors.newFixedThreadPool(inFlight)) {
      for (Future<Void> f : threads.invokeAll(workers)) {
        f.get();
      }
    }
    return batches / inFlight * inFlight;
  }

  private static long cpuNanos() {
    return ((com.sun.management.OperatingSystemMXBean)
            java.lang.management.ManagementFactory.getOperatingSystemMXBean())
        .getProcessCpuTime();
  }

  static VectorSchemaRoot input(BufferAllocator allocator) {
    ArrowType int64 = new ArrowType.Int(64, true);
    Schema schema =
        new Schema(
            List.of(
                new Field("arg1", FieldType.nullable(int64), null),
                new Field("arg2", FieldType.nullable(int64), null)));
    VectorSchemaRoot root = VectorSchemaRoot.create(schema, allocator);
    BigIntVector a = (BigIntVector) root.getVector(0);
    BigIntVector b = (BigIntVector) root.getVector(1);
    a.allocateNew(ROWS);
    b.allocateNew(ROWS);
    for (int i = 0; i < ROWS; i++) {
      a.set(i, i);
      b.set(i, 1_000_000L * i);
    }
    root.setRowCount(ROWS);
    return root;
  }

  /**
   * One batch on a new connection and a new DoExchange. The Java Flight client busy-waits in
   * putNext until its stream is ready, which on 2 cores starves everything else; so the connection
   * is made first and readiness is polled politely.
   */
  static void callOnce(BufferAllocator allocator, int port, CallOption headers, VectorSchemaRoot in)
      throws Exception {
    ManagedChannel channel =
        NettyChannelBuilder.forAddress("127.0.0.1", port)
            .usePlaintext()
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .build();
    try {
      awaitConnected(channel);
      try (FlightClient client = FlightGrpcUtils.createFlightClient(allocator, channel);
          FlightClient.ExchangeReaderWriter x =
              client.doExchange(FlightDescriptor.path("add"), headers)) {
        x.getWriter().start(in);
        while (!x.getWriter().isReady()) {
          LockSupport.parkNanos(100_000);
        }
        x.getWriter().putNext();
        x.getWriter().completed();
        if (!x.getReader().next()) {
          throw new IllegalStateException("no result batch");
        }
        VectorSchemaRoot out = x.getReader().getRoot();
        BigIntVector sum = (BigIntVector) out.getVector(0);
        if (out.getRowCount() != ROWS) {
          throw new IllegalStateException("result has " + out.getRowCount() + " rows");
        }
        for (int i = 0; i < ROWS; i += 4099) {
          if (sum.get(i) != 1_000_001L * i) {
            throw new IllegalStateException("wrong sum at row " + i + ": " + sum.get(i));
          }
        }
        if (x.getReader().next()) {
          throw new IllegalStateException("more result batches than input batches");
        }
      }
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  private static void awaitConnected(ManagedChannel channel) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    ConnectivityState state = channel.getState(true);
    while (state != ConnectivityState.READY) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("no connection to the endpoint: " + state);
      }
      CountDownLatch changed = new CountDownLatch(1);
      channel.notifyWhenStateChanged(state, changed::countDown);
      changed.await(1, TimeUnit.SECONDS);
      state = channel.getState(true);
    }
  }
}
