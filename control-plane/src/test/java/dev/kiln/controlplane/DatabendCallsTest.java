package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.definition.DataType;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.flight.CallHeaders;
import org.apache.arrow.flight.CallStatus;
import org.apache.arrow.flight.FlightServer;
import org.apache.arrow.flight.FlightServerMiddleware;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.NoOpFlightProducer;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Databend's retry policy against a Flight server that fails on purpose: errors before the response
 * headers and error statuses after them are retried with 50 ms ×2 backoff, 9 attempts in all; a
 * connection that breaks after the headers loses the mini-batch at once.
 */
class DatabendCallsTest {
  private static final int ROWS = 100_000;

  private BufferAllocator allocator;
  private FlightServer server;
  private final AtomicInteger calls = new AtomicInteger();
  private final List<Duration> delays = new CopyOnWriteArrayList<>();
  private final Map<String, String> seenHeaders = new ConcurrentHashMap<>();
  private volatile Behaviour behaviour;
  private final CountDownLatch release = new CountDownLatch(1);

  /** What the server does with call number {@code n} (1-based). */
  interface Behaviour {
    void serve(int n, FlightStream in, NoOpFlightProducer.ServerStreamListener out)
        throws Exception;
  }

  @BeforeEach
  void start() throws IOException {
    allocator = new RootAllocator();
    server =
        FlightServer.builder(
                allocator,
                Location.forGrpcInsecure("127.0.0.1", 0),
                new NoOpFlightProducer() {
                  @Override
                  public void doExchange(
                      CallContext context, FlightStream reader, ServerStreamListener writer) {
                    try {
                      behaviour.serve(calls.incrementAndGet(), reader, writer);
                    } catch (Exception e) {
                      writer.error(CallStatus.INTERNAL.withCause(e).toRuntimeException());
                    }
                  }
                })
            .middleware(
                FlightServerMiddleware.Key.of("h"),
                (info, headers, ctx) -> {
                  for (String k : headers.keys()) {
                    seenHeaders.put(k, headers.get(k));
                  }
                  return new FlightServerMiddleware() {
                    @Override
                    public void onBeforeSendingHeaders(CallHeaders outgoingHeaders) {}

                    @Override
                    public void onCallCompleted(CallStatus status) {}

                    @Override
                    public void onCallErrored(Throwable err) {}
                  };
                })
            .build()
            .start();
  }

  @AfterEach
  void stop() throws Exception {
    release.countDown();
    server.close();
    // A handler still ending on the server's executor (the cut-connection test's one is released
    // only now) frees its batch just after close returns; wait for that, then check for leaks.
    long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
    while (allocator.getAllocatedMemory() > 0 && System.nanoTime() < deadline) {
      LockSupport.parkNanos(1_000_000);
    }
    allocator.close();
  }

  /** Echoes arg1 as the result: one result batch per input batch. */
  private static void echo(FlightStream in, NoOpFlightProducer.ServerStreamListener out) {
    try (VectorSchemaRoot result =
        VectorSchemaRoot.create(in.getSchema(), in.getRoot().getVector(0).getAllocator())) {
      out.start(result);
      while (in.next()) {
        result.getVector(0).clear();
        in.getRoot().getVector(0).makeTransferPair(result.getVector(0)).transfer();
        result.setRowCount(in.getRoot().getRowCount());
        out.putNext();
      }
      out.completed();
    }
  }

  private DatabendCalls.Outcome exchange(int port) throws Exception {
    DatabendCalls calls =
        new DatabendCalls(
            allocator,
            new DatabendCalls.Target(
                "http://127.0.0.1:" + port,
                Map.of("X-Kiln-Token", "t0k"),
                "tenant1",
                "add",
                "add_handler",
                "q-1"),
            Duration.ofSeconds(30),
            delays::add);
    try (VectorSchemaRoot input =
        VectorSchemaRoot.create(
            DatabendCalls.inputSchema(List.of(DataType.parse("BIGINT NULL"))), allocator)) {
      BigIntVector arg1 = (BigIntVector) input.getVector(0);
      arg1.allocateNew(ROWS);
      for (int i = 0; i < ROWS; i++) {
        arg1.set(i, i);
      }
      input.setRowCount(ROWS);
      return calls.exchange(input);
    }
  }

  private static List<Duration> ms(long... values) {
    List<Duration> out = new ArrayList<>();
    for (long v : values) {
      out.add(Duration.ofMillis(v));
    }
    return out;
  }

  @Test
  void errorsBeforeTheHeadersAreRetriedWithBackoffUntilTheCallSucceeds() throws Exception {
    behaviour =
        (n, in, out) -> {
          if (n <= 3) {
            out.error(CallStatus.UNAVAILABLE.withDescription("not yet").toRuntimeException());
          } else {
            echo(in, out);
          }
        };
    try (DatabendCalls.Outcome o = exchange(server.getPort())) {
      assertThat(o.result()).isEqualTo(DatabendCalls.Result.OK);
      assertThat(o.attempts()).isEqualTo(4);
      assertThat(o.failures()).allSatisfy(f -> assertThat(f.headersArrived()).isFalse());
      assertThat(delays).isEqualTo(ms(50, 100, 200));
      BigIntVector result = (BigIntVector) o.columns().get(0);
      assertThat(result.getValueCount()).isEqualTo(ROWS);
      assertThat(result.get(ROWS - 1)).isEqualTo(ROWS - 1);
    }
    assertThat(seenHeaders)
        .containsEntry("x-databend-tenant", "tenant1")
        .containsEntry("x-databend-function", "add")
        .containsEntry("x-databend-function-handler", "add_handler")
        .containsEntry("x-databend-query-id", "q-1")
        .containsEntry("x-kiln-token", "t0k");
  }

  @Test
  void aServerThatNeverAnswersFailsAfterNineAttempts() throws Exception {
    behaviour =
        (n, in, out) ->
            out.error(CallStatus.NOT_FOUND.withDescription("unknown UDF").toRuntimeException());
    try (DatabendCalls.Outcome o = exchange(server.getPort())) {
      assertThat(o.result()).isEqualTo(DatabendCalls.Result.FAILED);
      assertThat(o.attempts()).isEqualTo(9);
      assertThat(o.failures().getLast().message()).contains("unknown UDF");
      assertThat(delays).isEqualTo(ms(50, 100, 200, 400, 800, 1600, 3200, 6400));
    }
    assertThat(DatabendCalls.delayBefore(10)).isEqualTo(Duration.ofMillis(25_600));
    assertThat(DatabendCalls.delayBefore(11)).isEqualTo(Duration.ofSeconds(30));
  }

  @Test
  void aClosedAllocatorEndsTheExchangeBeforeAnyConnection() throws Exception {
    behaviour = (n, in, out) -> echo(in, out);
    BufferAllocator closed = allocator.newChildAllocator("closed", 0, Long.MAX_VALUE);
    closed.close();
    DatabendCalls onClosed =
        new DatabendCalls(
            closed,
            new DatabendCalls.Target(
                "http://127.0.0.1:" + server.getPort(), Map.of(), "tenant1", "add", "add", "q-1"),
            Duration.ofSeconds(30),
            delays::add);
    try (VectorSchemaRoot input =
        VectorSchemaRoot.create(
            DatabendCalls.inputSchema(List.of(DataType.parse("BIGINT NULL"))), allocator)) {
      input.setRowCount(0);
      assertThatThrownBy(() -> onClosed.exchange(input))
          .isInstanceOf(IllegalStateException.class)
          .hasMessageContaining("closed");
    }
    assertThat(calls.get()).as("calls that reached the server").isZero();
    assertThat(delays).as("no retries").isEmpty();
  }

  @Test
  void anErrorStatusAfterTheHeadersIsRetried() throws Exception {
    behaviour =
        (n, in, out) -> {
          if (n == 1) {
            try (VectorSchemaRoot r = VectorSchemaRoot.create(in.getSchema(), allocator)) {
              out.start(r); // sends the headers and the schema
              r.setRowCount(0);
              out.putNext();
              out.error(CallStatus.INTERNAL.withDescription("runner died").toRuntimeException());
            }
          } else {
            echo(in, out);
          }
        };
    try (DatabendCalls.Outcome o = exchange(server.getPort())) {
      assertThat(o.result()).isEqualTo(DatabendCalls.Result.OK);
      assertThat(o.attempts()).isEqualTo(2);
      DatabendCalls.Failure f = o.failures().getFirst();
      assertThat(f.headersArrived()).isTrue();
      assertThat(f.transportBroken()).isFalse();
      assertThat(f.message()).contains("runner died");
    }
  }

  @Test
  void aConnectionThatBreaksAfterTheHeadersLosesTheMiniBatch() throws Exception {
    behaviour =
        (n, in, out) -> {
          // Sends the headers and a whole result, then never ends the call.
          try (VectorSchemaRoot r = VectorSchemaRoot.create(in.getSchema(), allocator)) {
            out.start(r);
            in.next();
            in.getRoot().getVector(0).makeTransferPair(r.getVector(0)).transfer();
            r.setRowCount(in.getRoot().getRowCount());
            out.putNext();
            release.await();
          }
        };
    try (Proxy proxy = new Proxy(server.getPort())) {
      Thread cutter =
          Thread.ofVirtual()
              .start(
                  () -> {
                    // The result's 800 KB have gone to the client, so its headers have too.
                    long deadline = System.nanoTime() + Duration.ofSeconds(30).toNanos();
                    while (proxy.downstream.get() < ROWS * 8L && System.nanoTime() < deadline) {
                      LockSupport.parkNanos(1_000_000);
                    }
                    proxy.cut();
                  });
      try (DatabendCalls.Outcome o = exchange(proxy.port())) {
        assertThat(o.result()).isEqualTo(DatabendCalls.Result.LOST);
        assertThat(o.attempts()).isEqualTo(1);
        assertThat(o.failures().getFirst().headersArrived()).isTrue();
        assertThat(o.failures().getFirst().transportBroken()).isTrue();
        assertThat(delays).isEmpty();
      }
      cutter.join();
    }
  }

  @Test
  void aRefusedConnectionIsRetried() throws Exception {
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    try (DatabendCalls.Outcome o = exchange(port)) {
      assertThat(o.result()).isEqualTo(DatabendCalls.Result.FAILED);
      assertThat(o.attempts()).isEqualTo(9);
      assertThat(o.failures())
          .allSatisfy(
              f -> {
                assertThat(f.headersArrived()).isFalse();
                assertThat(f.transportBroken()).isTrue();
              });
    }
  }

  /** Forwards one TCP connection to the server and counts the bytes going back; close cuts it. */
  static final class Proxy implements AutoCloseable {
    final ServerSocket listener;
    final AtomicLong downstream = new AtomicLong();
    final List<Socket> sockets = new CopyOnWriteArrayList<>();

    Proxy(int upstreamPort) throws IOException {
      listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
      Thread.ofVirtual()
          .start(
              () -> {
                try {
                  while (true) {
                    Socket client = listener.accept();
                    Socket upstream = new Socket(InetAddress.getLoopbackAddress(), upstreamPort);
                    sockets.add(client);
                    sockets.add(upstream);
                    pump(client.getInputStream(), upstream.getOutputStream(), new AtomicLong());
                    pump(upstream.getInputStream(), client.getOutputStream(), downstream);
                  }
                } catch (IOException e) {
                  // closed
                }
              });
    }

    int port() {
      return listener.getLocalPort();
    }

    private static void pump(InputStream in, OutputStream out, AtomicLong count) {
      Thread.ofVirtual()
          .start(
              () -> {
                byte[] buf = new byte[16384];
                try {
                  int n;
                  while ((n = in.read(buf)) >= 0) {
                    out.write(buf, 0, n);
                    out.flush();
                    count.addAndGet(n);
                  }
                } catch (IOException e) {
                  // cut
                }
              });
    }

    /** Ends every forwarded connection (the client sees its connection close). */
    void cut() {
      for (Socket s : sockets) {
        try {
          s.close();
        } catch (IOException e) {
          // already closed
        }
      }
    }

    @Override
    public void close() throws IOException {
      listener.close();
      cut();
    }
  }
}
