package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.grpc.HasByteBuffer;
import io.grpc.MethodDescriptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.ServerServiceDefinition;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.Deque;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.apache.arrow.flight.FlightGrpcUtils;
import org.apache.arrow.flight.NoOpFlightProducer;
import org.apache.arrow.flight.auth.ServerAuthHandler;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * DoExchange's messages as the worker parses them: the same messages Flight's own parser makes,
 * whether gRPC lends its buffers in pieces or the stream is a plain one; a broken message is
 * refused with what was wrong and holds no memory.
 */
class ExchangeMessagesTest {

  private BufferAllocator allocator;
  private ExecutorService executor;
  private MethodDescriptor.Marshaller<Object> flight;
  private MethodDescriptor.Marshaller<Object> ours;

  @BeforeEach
  @SuppressWarnings("unchecked")
  void setUp() {
    allocator = new RootAllocator();
    executor = Executors.newSingleThreadExecutor();
    ServerServiceDefinition service =
        FlightGrpcUtils.createFlightService(
                allocator, new NoOpFlightProducer(), ServerAuthHandler.NO_OP, executor)
            .bindService();
    ServerMethodDefinition<?, ?> exchange = doExchange(service);
    flight =
        (MethodDescriptor.Marshaller<Object>) exchange.getMethodDescriptor().getRequestMarshaller();
    ours =
        (MethodDescriptor.Marshaller<Object>)
            ExchangeMessages.bind(exchange, allocator).getMethodDescriptor().getRequestMarshaller();
  }

  @AfterEach
  void tearDown() {
    executor.shutdownNow();
    assertThat(allocator.getAllocatedMemory()).as("memory left allocated").isZero();
    allocator.close();
  }

  @Test
  void theEndpointParsesDoExchangeHere() {
    assertThat(ExchangeMessages.available())
        .as("Flight's constructor for received messages is reachable with this Arrow Java")
        .isTrue();
    ServerServiceDefinition service =
        FlightEndpoint.service(
            FlightGrpcUtils.createFlightService(
                    allocator, new NoOpFlightProducer(), ServerAuthHandler.NO_OP, executor)
                .bindService(),
            allocator);
    assertThat(doExchange(service).getMethodDescriptor().getRequestMarshaller())
        .isInstanceOf(ExchangeMessages.class);
    assertThat(service.getMethods()).hasSize(10);
  }

  @Test
  void parsesWhatFlightParsesFromLentBuffersAndPlainStreams() throws Exception {
    Schema schema =
        new Schema(
            List.of(
                Field.nullable("a", new ArrowType.Int(64, true)),
                Field.nullable("s", ArrowType.Utf8.INSTANCE)));
    try (VectorSchemaRoot root = VectorSchemaRoot.create(schema, allocator)) {
      BigIntVector a = (BigIntVector) root.getVector(0);
      VarCharVector s = (VarCharVector) root.getVector(1);
      int rows = 3000;
      a.allocateNew(rows);
      s.allocateNew(rows);
      for (int i = 0; i < rows; i++) {
        if (i % 7 == 3) {
          a.setNull(i);
          s.setNull(i);
        } else {
          a.set(i, i * 1_000_003L);
          s.setSafe(i, ("v" + i).getBytes(StandardCharsets.UTF_8));
        }
      }
      root.setRowCount(rows);
      byte[] batch = RawFlightExchange.batchMessage(root);
      // app_metadata and a field FlightData does not have, as a newer client might send.
      ByteArrayOutputStream extra = new ByteArrayOutputStream();
      extra.writeBytes(batch);
      RawFlightExchange.field(extra, 3, "meta".getBytes(StandardCharsets.UTF_8));
      RawFlightExchange.field(extra, 17, new byte[] {1, 2, 3});
      for (byte[] message :
          List.of(RawFlightExchange.schemaMessage("add", schema), batch, extra.toByteArray())) {
        byte[] expected = reserialised(flight, new ByteArrayInputStream(message));
        assertThat(reserialised(ours, new Lending(message, 1000))).isEqualTo(expected);
        assertThat(reserialised(ours, new Lending(message, 7))).isEqualTo(expected);
        assertThat(reserialised(ours, new ByteArrayInputStream(message))).isEqualTo(expected);
      }
    }
  }

  @Test
  void aBrokenMessageIsRefusedAndHoldsNoMemory() throws Exception {
    byte[] batch = bigints(1000);
    byte[] cut = Arrays.copyOf(batch, batch.length - 100);
    assertThatThrownBy(() -> ours.parse(new Lending(cut, 512)))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT))
        .hasMessageContaining("FlightData message Kiln cannot read")
        .hasMessageContaining("100 bytes early");
    // A group (wire type 3) is no part of FlightData.
    assertThatThrownBy(() -> ours.parse(new ByteArrayInputStream(new byte[] {0x0b})))
        .hasMessageContaining("wire type 3");
  }

  @Test
  @SuppressWarnings("unchecked")
  void aBatchBeyondTheWorkersMemoryIsRefusedAsResourceExhausted() throws Exception {
    byte[] batch = bigints(100_000);
    ServerMethodDefinition<?, ?> exchange =
        doExchange(
            FlightGrpcUtils.createFlightService(
                    allocator, new NoOpFlightProducer(), ServerAuthHandler.NO_OP, executor)
                .bindService());
    try (BufferAllocator small = allocator.newChildAllocator("small", 0, 64 << 10)) {
      MethodDescriptor.Marshaller<Object> tight =
          (MethodDescriptor.Marshaller<Object>)
              ExchangeMessages.bind(exchange, small).getMethodDescriptor().getRequestMarshaller();
      assertThatThrownBy(() -> tight.parse(new Lending(batch, 4096)))
          .isInstanceOfSatisfying(
              StatusRuntimeException.class,
              e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.RESOURCE_EXHAUSTED))
          .hasMessageContaining("no memory left for this batch");
      assertThat(small.getAllocatedMemory()).isZero();
    }
  }

  /** The FlightData message of a batch of one BIGINT column holding 0, 1, ..., rows - 1. */
  private byte[] bigints(int rows) {
    Schema schema = new Schema(List.of(Field.nullable("a", new ArrowType.Int(64, true))));
    try (VectorSchemaRoot root = VectorSchemaRoot.create(schema, allocator)) {
      BigIntVector a = (BigIntVector) root.getVector(0);
      a.allocateNew(rows);
      for (int i = 0; i < rows; i++) {
        a.set(i, i);
      }
      root.setRowCount(rows);
      return RawFlightExchange.batchMessage(root);
    }
  }

  private static ServerMethodDefinition<?, ?> doExchange(ServerServiceDefinition service) {
    return service.getMethods().stream()
        .filter(m -> m.getMethodDescriptor().getBareMethodName().equals("DoExchange"))
        .findFirst()
        .orElseThrow();
  }

  /** The message parsed by {@code parser}, written back by Flight. */
  private byte[] reserialised(MethodDescriptor.Marshaller<Object> parser, InputStream in)
      throws Exception {
    Object message = parser.parse(in);
    try (AutoCloseable closing = (AutoCloseable) message;
        InputStream out = flight.stream(message)) {
      return out.readAllBytes();
    }
  }

  /** A stream that lends its bytes as direct buffers of {@code piece} bytes, as gRPC's does. */
  private static final class Lending extends InputStream implements HasByteBuffer {
    private final Deque<ByteBuffer> pieces = new ArrayDeque<>();

    Lending(byte[] bytes, int piece) {
      for (int at = 0; at < bytes.length; at += piece) {
        int n = Math.min(piece, bytes.length - at);
        ByteBuffer b = ByteBuffer.allocateDirect(n);
        b.put(bytes, at, n).flip();
        pieces.add(b);
      }
    }

    private ByteBuffer current() {
      while (!pieces.isEmpty() && !pieces.peek().hasRemaining()) {
        pieces.poll();
      }
      return pieces.peek();
    }

    @Override
    public int read() {
      ByteBuffer b = current();
      return b == null ? -1 : b.get() & 0xff;
    }

    @Override
    public int read(byte[] to, int off, int len) {
      ByteBuffer b = current();
      if (b == null) {
        return len == 0 ? 0 : -1;
      }
      int n = Math.min(len, b.remaining());
      b.get(to, off, n);
      return n;
    }

    @Override
    public long skip(long n) throws IOException {
      ByteBuffer b = current();
      if (b == null) {
        return 0;
      }
      int k = (int) Math.min(n, b.remaining());
      b.position(b.position() + k);
      return k;
    }

    @Override
    public boolean byteBufferSupported() {
      return true;
    }

    @Override
    public ByteBuffer getByteBuffer() {
      ByteBuffer b = current();
      return b == null ? null : b.duplicate();
    }
  }
}
