package dev.kiln.controlplane;

import dev.kiln.definition.DataType;
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
import java.io.IOException;
import java.net.URI;
import java.nio.channels.ClosedChannelException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.BooleanSupplier;
import org.apache.arrow.flight.CallOptions;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.FlightClient;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.util.AutoCloseables;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Sends one mini-batch the way Databend Query's server-UDF client does, retries included: a new
 * connection per attempt, Databend's call headers plus every header the provisioning RPC returned,
 * {@value #RETRIES} retries after the first attempt with exponential backoff (50 ms, ×2, capped at
 * 30 s, no jitter). Every error is retried except a broken transport after the response headers
 * arrived: Databend then fails the query, and the mini-batch is reported here as lost.
 *
 * <p>Read from Databend's {@code TransformUdfServer} ({@code external_server_request_retry_times} =
 * 8, backon's {@code ExponentialBuilder}) and {@code udf_client.rs} (errors from the response
 * stream whose message names a transport failure are not retried). Used by the restart tests and
 * {@code RestartBenchmark}.
 */
public final class DatabendCalls {
  /** Databend's {@code external_server_request_retry_times}: retries after the first attempt. */
  public static final int RETRIES = 8;

  /** Databend's {@code external_server_request_timeout_secs}. */
  public static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(180);

  /** hyper's HTTP/2 client stream window (2 MiB), which Databend's client keeps. */
  static final int STREAM_WINDOW = 2 * 1024 * 1024;

  static final Duration FIRST_DELAY = Duration.ofMillis(50);
  static final Duration MAX_DELAY = Duration.ofSeconds(30);

  /**
   * Lower-case fragments of a broken transport: Databend's list, then how grpc-java words the same
   * events. A status the server sent never carries a cause; a transport failure often does.
   */
  private static final List<String> TRANSPORT_FRAGMENTS =
      List.of(
          "h2 protocol error",
          "broken pipe",
          "connection reset",
          "error reading a body from connection",
          "connection refused",
          "network is unreachable",
          "no route to host",
          "network closed for unknown reason",
          "connection closed",
          "rst_stream",
          "goaway");

  /** Where a mini-batch goes, and the names Databend puts on it. */
  public record Target(
      String endpoint,
      Map<String, String> headers,
      String tenant,
      String function,
      String handler,
      String queryId) {

    /** The call headers of every attempt: Databend's, then the resource's (same name wins). */
    FlightCallHeaders callHeaders() {
      Map<String, String> all = new TreeMap<>();
      all.put("x-databend-tenant", tenant);
      all.put("x-databend-function", function);
      all.put("x-databend-function-handler", handler);
      all.put("x-databend-query-id", queryId);
      headers.forEach((k, v) -> all.put(k.toLowerCase(Locale.ROOT), v));
      FlightCallHeaders h = new FlightCallHeaders();
      all.forEach(h::insert);
      return h;
    }
  }

  /** One failed attempt; {@code atNanos} is {@link System#nanoTime()} when it failed. */
  public record Failure(
      int attempt, boolean headersArrived, boolean transportBroken, String message, long atNanos) {}

  /** How a mini-batch ended. */
  public enum Result {
    /** A result with as many rows as the input. */
    OK,
    /** Every attempt failed with an error Databend retries. */
    FAILED,
    /** The transport broke after the response headers: Databend fails the query. */
    LOST
  }

  /**
   * What one mini-batch did. On {@link Result#OK}, {@code columns} holds column 0 of each result
   * batch (the caller closes the outcome); otherwise it is empty.
   */
  public record Outcome(
      Result result,
      int attempts,
      List<Failure> failures,
      long startNanos,
      long endNanos,
      List<FieldVector> columns)
      implements AutoCloseable {

    /** Retries used: attempts after the first. */
    public int retries() {
      return attempts - 1;
    }

    @Override
    public void close() {
      AutoCloseables.closeNoChecked(AutoCloseables.all(columns));
    }
  }

  /** Waits between attempts; the tests record the delays instead. */
  interface Sleeper {
    void sleep(Duration d) throws InterruptedException;
  }

  private final BufferAllocator allocator;
  private final Target target;
  private final Duration timeout;
  private final Sleeper sleeper;

  /** Calls {@code target} with Databend's request timeout. */
  public DatabendCalls(BufferAllocator allocator, Target target) {
    this(allocator, target, REQUEST_TIMEOUT, d -> Thread.sleep(d.toMillis()));
  }

  DatabendCalls(BufferAllocator allocator, Target target, Duration timeout, Sleeper sleeper) {
    this.allocator = allocator;
    this.target = target;
    this.timeout = timeout;
    this.sleeper = sleeper;
  }

  /** The input schema Databend sends for these argument types ({@code arg1..argN}, Utf8View). */
  public static Schema inputSchema(List<DataType> types) {
    List<Field> fields = new ArrayList<>();
    for (int i = 0; i < types.size(); i++) {
      fields.add(ArrowRows.inputField("arg" + (i + 1), types.get(i)));
    }
    return new Schema(fields);
  }

  /** Databend's delay before retry {@code retry} (1-based): 50 ms × 2^(retry-1), at most 30 s. */
  static Duration delayBefore(int retry) {
    long ms = FIRST_DELAY.toMillis() << Math.min(retry - 1, 20);
    return ms >= MAX_DELAY.toMillis() ? MAX_DELAY : Duration.ofMillis(ms);
  }

  /**
   * Whether a failure is a broken transport (the connection, not the server, ended the call): its
   * message or a cause names a transport failure, or a cause is an I/O error.
   */
  static boolean transportBroken(Throwable failure) {
    for (Throwable t = failure; t != null; t = t.getCause()) {
      if (t instanceof IOException || t instanceof ClosedChannelException) {
        return true;
      }
      String m = t.getMessage() == null ? "" : t.getMessage().toLowerCase(Locale.ROOT);
      if (TRANSPORT_FRAGMENTS.stream().anyMatch(m::contains)) {
        return true;
      }
      if (t.getCause() == t) {
        break;
      }
    }
    return false;
  }

  /**
   * Sends {@code input} (one mini-batch, shaped by {@link #inputSchema}) until it succeeds, a retry
   * is not allowed, or {@value #RETRIES} retries are used.
   */
  public Outcome exchange(VectorSchemaRoot input) throws InterruptedException {
    long start = System.nanoTime();
    List<Failure> failures = new ArrayList<>();
    for (int attempt = 1; ; attempt++) {
      HeadersSeen seen = new HeadersSeen();
      List<FieldVector> columns = new ArrayList<>();
      // Opened before the client: Arrow builds a client's channel before it takes its allocator,
      // and leaves that channel open when the allocator is closed. A closed allocator is the
      // caller's error, not the server's: it ends the exchange instead of being retried.
      BufferAllocator attemptAllocator =
          allocator.newChildAllocator("databend-call", 0, Long.MAX_VALUE);
      try {
        attempt(attemptAllocator, input, seen, columns);
        attemptAllocator.close();
        return new Outcome(Result.OK, attempt, failures, start, System.nanoTime(), columns);
      } catch (InterruptedException e) {
        AutoCloseables.closeNoChecked(AutoCloseables.all(columns));
        release(attemptAllocator, e);
        throw e;
      } catch (Exception e) {
        AutoCloseables.closeNoChecked(AutoCloseables.all(columns));
        release(attemptAllocator, e);
        if (Thread.currentThread().isInterrupted()) {
          throw new InterruptedException("interrupted after attempt " + attempt + ": " + e);
        }
        boolean broken = transportBroken(e);
        boolean headers = seen.arrived();
        failures.add(new Failure(attempt, headers, broken, e.toString(), System.nanoTime()));
        if (broken && headers) {
          return new Outcome(Result.LOST, attempt, failures, start, System.nanoTime(), List.of());
        }
        if (attempt > RETRIES) {
          return new Outcome(Result.FAILED, attempt, failures, start, System.nanoTime(), List.of());
        }
        sleeper.sleep(delayBefore(attempt));
      }
    }
  }

  /** Closes an attempt's allocator after it failed; a leak there joins {@code failure}. */
  private static void release(BufferAllocator attemptAllocator, Exception failure) {
    try {
      attemptAllocator.close();
    } catch (RuntimeException e) {
      failure.addSuppressed(e);
    }
  }

  private void attempt(
      BufferAllocator attemptAllocator,
      VectorSchemaRoot input,
      HeadersSeen seen,
      List<FieldVector> columns)
      throws Exception {
    try (FlightClient client =
            FlightGrpcUtils.createFlightClient(attemptAllocator, channel(target.endpoint(), seen));
        FlightClient.ExchangeReaderWriter exchange =
            client.doExchange(
                FlightDescriptor.path(target.handler()),
                new HeaderCallOption(target.callHeaders()),
                CallOptions.timeout(timeout.toMillis(), TimeUnit.MILLISECONDS))) {
      FlightClient.ClientStreamListener writer = exchange.getWriter();
      writer.start(input);
      // Flight's putNext waits for the call to be ready by spinning on isReady: 256 calls waiting
      // for a restarting server would hold every core, which Databend's async client never does.
      if (seen.awaitReady(writer::isReady)) {
        writer.putNext();
        writer.completed();
      }
      FlightStream results = exchange.getReader();
      long rows = 0;
      while (results.next()) {
        VectorSchemaRoot root = results.getRoot();
        if (root.getFieldVectors().isEmpty()) {
          throw new IllegalStateException("Get empty data from UDF Server");
        }
        FieldVector column = root.getVector(0);
        FieldVector copy = column.getField().createVector(allocator);
        columns.add(copy);
        column.makeTransferPair(copy).transfer();
        copy.setValueCount(root.getRowCount());
        rows += root.getRowCount();
      }
      if (rows != input.getRowCount()) {
        throw new IllegalStateException(
            "UDF server should return "
                + input.getRowCount()
                + " rows, but it returned "
                + rows
                + " rows");
      }
    }
  }

  /**
   * A new connection to {@code endpoint} as Databend's client opens it: tonic on hyper, whose
   * HTTP/2 client announces a {@value #STREAM_WINDOW}-byte stream window (hyper's {@code
   * DEFAULT_STREAM_WINDOW}; Databend sets none), so a mini-batch's result up to that size is sent
   * without waiting for the client to read. grpc-java's default would be 1 MiB, tuned as it goes.
   * The Flight client closes the channel with itself.
   */
  private static ManagedChannel channel(String endpoint, HeadersSeen seen) {
    URI uri = URI.create(endpoint);
    boolean tls = "https".equals(uri.getScheme());
    NettyChannelBuilder b =
        NettyChannelBuilder.forAddress(
                uri.getHost(), uri.getPort() >= 0 ? uri.getPort() : tls ? 443 : 80)
            .flowControlWindow(STREAM_WINDOW)
            .maxInboundMessageSize(Integer.MAX_VALUE)
            .intercept(seen);
    return (tls ? b.useTransportSecurity() : b.usePlaintext()).build();
  }

  /**
   * Marks whether response headers arrived and whether the call ended, and wakes a call waiting to
   * send. gRPC reports headers to {@code onHeaders} only when the server sent them; a call that
   * ends without them (trailers only) never calls it.
   */
  private static final class HeadersSeen implements ClientInterceptor {
    private static final long RECHECK_MILLIS = 20;
    private volatile boolean arrived;
    private volatile boolean ended;
    private volatile Thread waiter;

    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, io.grpc.CallOptions options, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, options)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          super.start(
              new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
                @Override
                public void onHeaders(Metadata h) {
                  arrived = true;
                  super.onHeaders(h);
                }

                @Override
                public void onReady() {
                  LockSupport.unpark(waiter);
                  super.onReady();
                }

                @Override
                public void onClose(Status status, Metadata trailers) {
                  ended = true;
                  LockSupport.unpark(waiter);
                  super.onClose(status, trailers);
                }
              },
              headers);
        }
      };
    }

    boolean arrived() {
      return arrived;
    }

    /**
     * Parks until {@code ready} holds or the call ended, woken by gRPC's readiness and close events
     * (and every {@value #RECHECK_MILLIS} ms in case one came before the wait began); true when
     * ready.
     */
    boolean awaitReady(BooleanSupplier ready) {
      waiter = Thread.currentThread();
      try {
        while (!ready.getAsBoolean()) {
          if (ended) {
            return false;
          }
          LockSupport.parkNanos(this, TimeUnit.MILLISECONDS.toNanos(RECHECK_MILLIS));
        }
        return !ended;
      } finally {
        waiter = null;
      }
    }
  }
}
