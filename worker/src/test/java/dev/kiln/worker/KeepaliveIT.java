package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.netty.bootstrap.Bootstrap;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import io.netty.channel.ChannelInitializer;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.nio.NioIoHandler;
import io.netty.channel.socket.nio.NioSocketChannel;
import io.netty.handler.codec.http2.DefaultHttp2Headers;
import io.netty.handler.codec.http2.DefaultHttp2HeadersFrame;
import io.netty.handler.codec.http2.DefaultHttp2PingFrame;
import io.netty.handler.codec.http2.DefaultHttp2ResetFrame;
import io.netty.handler.codec.http2.Http2Error;
import io.netty.handler.codec.http2.Http2FrameCodecBuilder;
import io.netty.handler.codec.http2.Http2GoAwayFrame;
import io.netty.handler.codec.http2.Http2Headers;
import io.netty.handler.codec.http2.Http2HeadersFrame;
import io.netty.handler.codec.http2.Http2MultiplexHandler;
import io.netty.handler.codec.http2.Http2PingFrame;
import io.netty.handler.codec.http2.Http2SettingsFrame;
import io.netty.handler.codec.http2.Http2StreamChannel;
import io.netty.handler.codec.http2.Http2StreamChannelBootstrap;
import io.netty.util.ReferenceCountUtil;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.flight.FlightServer;
import org.apache.arrow.flight.Location;
import org.apache.arrow.flight.NoOpFlightProducer;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Databend's client sends HTTP/2 PINGs (every 60 s, also between and during calls). These tests
 * ping every second from a raw HTTP/2 client (grpc-java's own client will not ping more often than
 * every 10 s) and check that the endpoint neither sends GOAWAY nor drops the connection.
 */
class KeepaliveIT {

  static final int PINGS = 5;
  static final Duration INTERVAL = Duration.ofSeconds(1);

  private final MapDirectory directory = new MapDirectory();
  private final Tokens tokens = new Tokens(new byte[32]);
  private FlightEndpoint endpoint;
  private EventLoopGroup group;

  @BeforeEach
  void setUp() throws Exception {
    endpoint =
        FlightEndpoint.start(
            new FlightEndpoint.Config("127.0.0.1", 0, Duration.ofSeconds(60)),
            tokens,
            directory,
            new SimpleMeterRegistry());
    group = new MultiThreadIoEventLoopGroup(1, NioIoHandler.newFactory());
  }

  @AfterEach
  void tearDown() throws Exception {
    group.shutdownGracefully(0, 1, TimeUnit.SECONDS).sync();
    endpoint.close();
  }

  @Test
  void pingsEverySecondWithoutCallsKeepTheConnection() throws Exception {
    Pinger pinger = connect(endpoint.port());

    assertThat(pinger.pingEvery(INTERVAL, PINGS)).isEqualTo(PINGS);
    assertThat(pinger.channel.isActive()).isTrue();
    pinger.channel.close().sync();
  }

  @Test
  void pingsEverySecondDuringACallKeepTheConnectionAndTheCall() throws Exception {
    ContentKey key = new ContentKey("cd".repeat(32));
    MapDirectory.Handle handle =
        new MapDirectory.Handle(
            UdfSignature.of(Udfs.spec("f", List.of("INT"), "INT", "def f(x): return x")));
    directory.put("t", key, handle);
    Pinger pinger = connect(endpoint.port());

    // A DoExchange whose request stays open: the server holds it as an active call.
    Http2Headers headers =
        new DefaultHttp2Headers()
            .method("POST")
            .scheme("http")
            .authority("127.0.0.1:" + endpoint.port())
            .path("/arrow.flight.protocol.FlightService/DoExchange")
            .add("content-type", "application/grpc")
            .add("te", "trailers")
            .add(Tokens.HEADER, tokens.issue(new Tenant("t"), key))
            .add("x-databend-tenant", "t");
    CompletableFuture<Void> streamClosed = new CompletableFuture<>();
    Http2StreamChannel stream =
        new Http2StreamChannelBootstrap(pinger.channel)
            .handler(
                new ChannelInboundHandlerAdapter() {
                  @Override
                  public void channelRead(ChannelHandlerContext ctx, Object msg) {
                    if (msg instanceof Http2HeadersFrame h && h.isEndStream()) {
                      streamClosed.complete(null);
                    }
                    ReferenceCountUtil.release(msg);
                  }

                  @Override
                  public void channelInactive(ChannelHandlerContext ctx) {
                    streamClosed.complete(null);
                  }
                })
            .open()
            .sync()
            .getNow();
    stream.writeAndFlush(new DefaultHttp2HeadersFrame(headers, false)).sync();

    assertThat(pinger.pingEvery(INTERVAL, PINGS)).isEqualTo(PINGS);
    assertThat(pinger.channel.isActive()).isTrue();
    assertThat(streamClosed).as("the call is still open").isNotDone();

    stream.writeAndFlush(new DefaultHttp2ResetFrame(Http2Error.CANCEL)).sync();
    assertThat(pinger.pingEvery(Duration.ZERO, 1)).isEqualTo(1);
    pinger.channel.close().sync();
  }

  /** The control: grpc-java's default policy kills the same client, so the tests above can fail. */
  @Test
  void aDefaultFlightServerAnswersTheSamePingsWithGoAway() throws Exception {
    try (BufferAllocator allocator = new RootAllocator();
        FlightServer plain =
            FlightServer.builder(
                    allocator, Location.forGrpcInsecure("127.0.0.1", 0), new NoOpFlightProducer())
                .build()
                .start()) {
      Pinger pinger = connect(plain.getPort());

      assertThatThrownBy(() -> pinger.pingEvery(INTERVAL, PINGS))
          .hasMessageContaining("GOAWAY")
          .hasMessageContaining("too_many_pings");
    }
  }

  private Pinger connect(int port) throws Exception {
    Pinger pinger = new Pinger();
    Channel channel =
        new Bootstrap()
            .group(group)
            .channel(NioSocketChannel.class)
            .handler(
                new ChannelInitializer<Channel>() {
                  @Override
                  protected void initChannel(Channel ch) {
                    ch.pipeline()
                        .addLast(
                            Http2FrameCodecBuilder.forClient().build(),
                            new Http2MultiplexHandler(new ChannelInboundHandlerAdapter()),
                            pinger);
                  }
                })
            .connect("127.0.0.1", port)
            .sync()
            .channel();
    pinger.channel = channel;
    pinger.settings.get(10, TimeUnit.SECONDS);
    return pinger;
  }

  /** Sends PINGs, each {@code interval} after the previous ACK, and watches for GOAWAY. */
  private static final class Pinger extends ChannelInboundHandlerAdapter {
    Channel channel;
    final CompletableFuture<Void> settings = new CompletableFuture<>();
    private CompletableFuture<Integer> run;
    private int wanted;
    private int acked;
    private Duration interval;

    int pingEvery(Duration interval, int count) throws Exception {
      CompletableFuture<Integer> done = new CompletableFuture<>();
      channel
          .eventLoop()
          .execute(
              () -> {
                this.run = done;
                this.wanted = count;
                this.acked = 0;
                this.interval = interval;
                channel.writeAndFlush(new DefaultHttp2PingFrame(0));
              });
      try {
        return done.get(count * (interval.toMillis() + 5000), TimeUnit.MILLISECONDS);
      } catch (ExecutionException e) {
        throw (Exception) e.getCause();
      }
    }

    @Override
    public void channelRead(ChannelHandlerContext ctx, Object msg) {
      try {
        if (msg instanceof Http2SettingsFrame) {
          settings.complete(null);
        } else if (msg instanceof Http2PingFrame ping && ping.ack() && run != null) {
          acked++;
          if (acked == wanted) {
            run.complete(acked);
          } else {
            ctx.executor()
                .schedule(
                    () -> ctx.writeAndFlush(new DefaultHttp2PingFrame(acked)),
                    interval.toMillis(),
                    TimeUnit.MILLISECONDS);
          }
        } else if (msg instanceof Http2GoAwayFrame goAway) {
          String debug = goAway.content().toString(StandardCharsets.UTF_8);
          fail("GOAWAY " + goAway.errorCode() + " " + debug);
        }
      } finally {
        ReferenceCountUtil.release(msg);
      }
    }

    @Override
    public void channelInactive(ChannelHandlerContext ctx) {
      fail("the server closed the connection");
    }

    private void fail(String why) {
      if (run != null) {
        run.completeExceptionally(new IllegalStateException(why));
      }
      settings.completeExceptionally(new IllegalStateException(why));
    }
  }
}
