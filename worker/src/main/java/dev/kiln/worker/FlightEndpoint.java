package dev.kiln.worker;

import io.grpc.ServerInterceptors;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.netty.GrpcHttp2ConnectionHandler;
import io.grpc.netty.InternalProtocolNegotiator;
import io.grpc.netty.InternalProtocolNegotiators;
import io.grpc.netty.NettyServerBuilder;
import io.micrometer.core.instrument.MeterRegistry;
import io.netty.channel.ChannelHandler;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.util.AsciiString;
import java.io.IOException;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.FlightServer;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.auth.ServerAuthHandler;
import org.apache.arrow.flight.auth.ServerAuthInterceptor;
import org.apache.arrow.flight.grpc.ServerBackpressureThresholdInterceptor;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The Arrow Flight server (plaintext h2c) that Databend calls to compute UDFs: DoExchange and
 * GetFlightInfo of the server-UDF protocol, routed by the {@value Tokens#HEADER} token to a UDF of
 * the {@link UdfDirectory}, plus the {@code builtin_healthy} and {@code builtin_echo} functions.
 * Schemas with Databend's Decimal64, which Arrow Java cannot read, are rewritten on arrival ({@link
 * Decimal64Schemas}).
 */
public final class FlightEndpoint implements AutoCloseable {
  /** How long closing waits for gRPC to free the messages of calls that just ended. */
  private static final Duration RELEASE_WAIT = Duration.ofSeconds(2);

  private static final String ZERO_COPY_READ = "arrow.flight.enable_zero_copy_read";

  /** Freed batch memory kept for the next batches, at most ({@link RecycledMemory}). */
  static final long RECYCLED_BYTES = 512L << 20;

  /** Kept memory unused this long is freed; looked at this often. */
  static final Duration RECYCLED_UNUSED = Duration.ofSeconds(10);

  /**
   * Where to listen and how long a call waits for a UDF whose sandbox is still starting.
   *
   * @param bindHost address to bind, {@code 0.0.0.0} for all
   * @param port TCP port; 0 picks a free one ({@link #port()} tells which)
   * @param readyWait how long a call waits for a UDF that is not ready yet
   */
  public record Config(String bindHost, int port, Duration readyWait) {
    public Config {
      Objects.requireNonNull(bindHost, "bindHost");
      if (port < 0 || port > 65535) {
        throw new IllegalArgumentException("port must be 0..65535, got " + port);
      }
      Objects.requireNonNull(readyWait, "readyWait");
      if (readyWait.isNegative()) {
        throw new IllegalArgumentException("readyWait must not be negative, got " + readyWait);
      }
    }

    /** All addresses, port 8815, and Databend's own 180 s request timeout as the ready wait. */
    public static Config defaults() {
      return new Config("0.0.0.0", 8815, Duration.ofSeconds(180));
    }
  }

  /**
   * Clients may ping this often, with or without calls. Databend pings every 60 s, also while a
   * long batch is computed and between queries; grpc-java's default (5 min, not without calls)
   * answers that with GOAWAY too_many_pings, which kills the call.
   */
  static final Duration PERMITTED_PING_INTERVAL = Duration.ofSeconds(1);

  private static final Logger log = LoggerFactory.getLogger(FlightEndpoint.class);

  private final BufferAllocator allocator;
  private final UdfProducer producer;
  private final FlightServer server;
  private final ExecutorService executor;
  private final RecycledMemory memory;
  private final ScheduledExecutorService trimmer;

  private FlightEndpoint(
      BufferAllocator allocator,
      UdfProducer producer,
      FlightServer server,
      ExecutorService executor,
      RecycledMemory memory) {
    this.allocator = allocator;
    this.producer = producer;
    this.server = server;
    this.executor = executor;
    this.memory = memory;
    this.trimmer =
        Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kiln-flight-memory").factory());
    long every = RECYCLED_UNUSED.toMillis();
    trimmer.scheduleWithFixedDelay(
        () -> memory.trim(RECYCLED_UNUSED), every, every, TimeUnit.MILLISECONDS);
  }

  /** Starts listening; the endpoint serves until {@link #close()}. */
  public static FlightEndpoint start(
      Config config, Tokens tokens, UdfDirectory directory, MeterRegistry meters)
      throws IOException {
    Objects.requireNonNull(tokens, "tokens");
    Objects.requireNonNull(directory, "directory");
    Objects.requireNonNull(meters, "meters");
    // Where Flight parses messages itself (DoExchange without ExchangeMessages, other methods), it
    // then reads a body from gRPC's buffers in one call rather than through an InputStream (both
    // through a heap array of the body's size in Arrow Java 19). Read when Arrow's ArrowMessage
    // class loads, so it is set before the server exists; a value given wins.
    if (System.getProperty(ZERO_COPY_READ) == null) {
      System.setProperty(ZERO_COPY_READ, "true");
    }
    RecycledMemory memory = new RecycledMemory(RECYCLED_BYTES);
    BufferAllocator allocator = newAllocator(memory);
    UdfProducer producer =
        new UdfProducer(allocator, tokens, directory, meters, config.readyWait());
    ExecutorService executor = callExecutor(Runtime.version().feature());
    // Flight's own service, registered under the same service name, so it replaces the one
    // FlightServer added.
    ServerServiceDefinition service =
        ServerInterceptors.intercept(
            service(
                FlightGrpcUtils.createFlightService(
                        allocator, producer, ServerAuthHandler.NO_OP, executor)
                    .bindService(),
                allocator),
            new ServerBackpressureThresholdInterceptor(FlightServer.DEFAULT_BACKPRESSURE_THRESHOLD),
            new ServerAuthInterceptor(ServerAuthHandler.NO_OP));
    Consumer<NettyServerBuilder> grpc =
        netty ->
            netty
                .permitKeepAliveTime(PERMITTED_PING_INTERVAL.toMillis(), TimeUnit.MILLISECONDS)
                .permitKeepAliveWithoutCalls(true)
                .addService(service)
                .protocolNegotiator(new ComposingPlaintext());
    FlightServer server =
        FlightServer.builder(
                allocator, Location.forGrpcInsecure(config.bindHost(), config.port()), producer)
            .executor(executor)
            .middleware(CallHeadersMiddleware.KEY, new CallHeadersMiddleware.Factory())
            .transportHint("grpc.builderConsumer", grpc)
            .build();
    try {
      server.start();
    } catch (IOException e) {
      executor.shutdownNow();
      allocator.close();
      throw new IOException(
          "the Flight endpoint cannot listen on "
              + config.bindHost()
              + ":"
              + config.port()
              + " ("
              + e.getMessage()
              + "); choose another port or stop what is using it",
          e);
    }
    log.info("Flight endpoint listening on {}:{}", config.bindHost(), server.getPort());
    return new FlightEndpoint(allocator, producer, server, executor, memory);
  }

  /**
   * Flight's methods, DoExchange's messages parsed by {@link ExchangeMessages} (which also rewrites
   * Decimal64 schemas); the other methods' messages reach Flight through the Decimal64 rewriting
   * interceptor, which needs them as raw streams.
   */
  static ServerServiceDefinition service(
      ServerServiceDefinition flight, BufferAllocator allocator) {
    String name = flight.getServiceDescriptor().getName();
    ServerServiceDefinition.Builder others = ServerServiceDefinition.builder(name);
    ServerMethodDefinition<?, ?> exchange = null;
    for (ServerMethodDefinition<?, ?> m : flight.getMethods()) {
      if (ExchangeMessages.available()
          && "DoExchange".equals(m.getMethodDescriptor().getBareMethodName())) {
        exchange = ExchangeMessages.bind(m, allocator);
      } else {
        others.addMethod(m);
      }
    }
    ServerServiceDefinition.Builder all = ServerServiceDefinition.builder(name);
    ServerInterceptors.intercept(
            ServerInterceptors.useInputStreamMessages(others.build()),
            new Decimal64Schemas.Interceptor())
        .getMethods()
        .forEach(all::addMethod);
    if (exchange != null) {
      all.addMethod(exchange);
    }
    return all.build();
  }

  /**
   * gRPC's plaintext HTTP/2 connections, whose handler gathers the bytes of a frame split across
   * socket reads by composing the read buffers instead of merging them. With Databend's 1 MiB
   * batches the merging copied every partial frame into a new, larger buffer on each read (gRPC
   * still holds slices of the old one): a quarter of the event loop's samples in a profile of the
   * fast-client benchmark at 256 calls in flight, with Netty's pool allocating and zeroing fresh
   * chunks for it. Composing ended those copies (none left in the profile) and did at least as well
   * in three alternating pairs of runs against the plain loop of the same run.
   */
  static final class ComposingPlaintext implements InternalProtocolNegotiator.ProtocolNegotiator {
    private final InternalProtocolNegotiator.ProtocolNegotiator plain =
        InternalProtocolNegotiators.serverPlaintext();

    @Override
    public AsciiString scheme() {
      return plain.scheme();
    }

    @Override
    public ChannelHandler newHandler(GrpcHttp2ConnectionHandler grpc) {
      grpc.setCumulator(ByteToMessageDecoder.COMPOSITE_CUMULATOR);
      return plain.newHandler(grpc);
    }

    @Override
    public void close() {
      plain.close();
    }
  }

  /**
   * Where calls run (gRPC's callbacks and every DoExchange, which blocks until its runners answer).
   * A virtual thread per task from Java 24 on, where a virtual thread blocking in a {@code
   * synchronized} block no longer holds its carrier (JEP 491): with Databend's 256 calls in flight,
   * 256 platform threads cost the worker about 40% more CPU per batch in switches (fast-client
   * throughput, {@code add} at 256 in flight: 8–9 ms against 11–16 ms). Before that, platform
   * threads, as gRPC and Arrow block in monitors.
   */
  static ExecutorService callExecutor(int javaFeatureVersion) {
    return javaFeatureVersion >= 24
        ? Executors.newThreadPerTaskExecutor(Thread.ofVirtual().name("kiln-flight-", 0).factory())
        : Executors.newCachedThreadPool(
            Thread.ofPlatform().daemon().name("kiln-flight-", 0).factory());
  }

  private static BufferAllocator newAllocator(RecycledMemory memory) throws IOException {
    try {
      return new RootAllocator(
          RootAllocator.configBuilder()
              .allocationManagerFactory(memory)
              .roundingPolicy(memory)
              .build());
    } catch (LinkageError e) {
      throw new IOException(
          "Arrow cannot allocate memory in this JVM ("
              + e
              + "); on Java 25 and later Netty turns sun.misc.Unsafe off by default, which"
              + " arrow-memory-netty needs: start the JVM with -Dio.netty.noUnsafe=false",
          e);
    }
  }

  /**
   * Whether the endpoint is serving: a DoExchange is running, or one ended less than {@code quiet}
   * ago (Databend's next call of a query comes within moments).
   */
  public boolean servedWithin(Duration quiet) {
    return producer.servedWithin(quiet);
  }

  /** The TCP port the endpoint listens on. */
  public int port() {
    return server.getPort();
  }

  /**
   * Stops accepting calls and waits a few seconds for running ones. Then closes the endpoint's
   * memory: memory still held with no call running is a leak and fails loudly (it is a bug); memory
   * of calls still running (a batch blocked on its runner) is left to the JVM.
   */
  @Override
  public void close() {
    try {
      server.close();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    executor.shutdown();
    trimmer.shutdownNow();
    int running = producer.activeCalls();
    if (running > 0) {
      log.warn(
          "Flight endpoint closed with {} call(s) still running; their {} bytes stay allocated",
          running,
          allocator.getAllocatedMemory());
      return;
    }
    // A call that ended moments ago may still have a message in flight that gRPC's threads free
    // (a batch that arrived as the call was refused): give them a moment before calling it a leak.
    long deadline = System.nanoTime() + RELEASE_WAIT.toNanos();
    while (allocator.getAllocatedMemory() > 0 && System.nanoTime() < deadline) {
      try {
        Thread.sleep(10);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    allocator.close();
    memory.freeAll();
  }
}
