package dev.kiln.worker;

import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.stub.ClientCalls;
import io.grpc.stub.StreamObserver;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.VectorLoader;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.VectorUnloader;
import org.apache.arrow.vector.ipc.message.ArrowBuffer;
import org.apache.arrow.vector.ipc.message.ArrowRecordBatch;
import org.apache.arrow.vector.ipc.message.IpcOption;
import org.apache.arrow.vector.ipc.message.MessageSerializer;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * A DoExchange written byte by byte, for what Arrow Java cannot send: Databend Query's Decimal64.
 * The caller gives the schema as Query declares it (e.g. {@code Decimal(15, 2, 64)}, which Arrow
 * Java serialises but cannot read) and the batch's buffers from vectors of the same layout (a
 * BigIntVector holds Decimal64's 8-byte values). Results are read with Arrow's own IPC reader.
 */
final class RawFlightExchange {

  private static final MethodDescriptor.Marshaller<byte[]> BYTES =
      new MethodDescriptor.Marshaller<>() {
        @Override
        public InputStream stream(byte[] value) {
          return new ByteArrayInputStream(value);
        }

        @Override
        public byte[] parse(InputStream stream) {
          try {
            return stream.readAllBytes();
          } catch (IOException e) {
            throw new IllegalStateException(e);
          }
        }
      };

  private static final MethodDescriptor<byte[], byte[]> DO_EXCHANGE =
      MethodDescriptor.<byte[], byte[]>newBuilder()
          .setType(MethodDescriptor.MethodType.BIDI_STREAMING)
          .setFullMethodName("arrow.flight.protocol.FlightService/DoExchange")
          .setRequestMarshaller(BYTES)
          .setResponseMarshaller(BYTES)
          .build();

  /** The results: the result schema and the result root (the caller closes it), or the error. */
  record Outcome(Schema schema, VectorSchemaRoot root, Status error) {}

  private RawFlightExchange() {}

  /**
   * Sends one batch: {@code declared} is the schema message as written on the wire; {@code batch}
   * supplies the buffers (its own schema is not sent).
   */
  static Outcome exchange(
      BufferAllocator allocator,
      int port,
      String handler,
      Map<String, String> headers,
      Schema declared,
      VectorSchemaRoot batch)
      throws Exception {
    ManagedChannel channel =
        NettyChannelBuilder.forAddress("127.0.0.1", port).usePlaintext().build();
    try {
      Metadata metadata = new Metadata();
      headers.forEach(
          (k, v) -> metadata.put(Metadata.Key.of(k, Metadata.ASCII_STRING_MARSHALLER), v));
      List<byte[]> replies = new ArrayList<>();
      CompletableFuture<Status> closed = new CompletableFuture<>();
      StreamObserver<byte[]> requests =
          ClientCalls.asyncBidiStreamingCall(
              io.grpc.ClientInterceptors.intercept(
                      channel, io.grpc.stub.MetadataUtils.newAttachHeadersInterceptor(metadata))
                  .newCall(
                      DO_EXCHANGE,
                      io.grpc.CallOptions.DEFAULT.withDeadlineAfter(60, TimeUnit.SECONDS)),
              new StreamObserver<>() {
                @Override
                public void onNext(byte[] value) {
                  replies.add(value);
                }

                @Override
                public void onError(Throwable t) {
                  closed.complete(Status.fromThrowable(t));
                }

                @Override
                public void onCompleted() {
                  closed.complete(Status.OK);
                }
              });
      requests.onNext(schemaMessage(handler, declared));
      requests.onNext(batchMessage(batch));
      requests.onCompleted();
      Status status = closed.get(60, TimeUnit.SECONDS);
      if (!status.isOk()) {
        return new Outcome(null, null, status);
      }
      return read(allocator, replies);
    } finally {
      channel.shutdownNow().awaitTermination(10, TimeUnit.SECONDS);
    }
  }

  private static Outcome read(BufferAllocator allocator, List<byte[]> replies) throws IOException {
    Schema schema = null;
    VectorSchemaRoot root = null;
    for (byte[] reply : replies) {
      byte[][] fields = parse(reply);
      byte[] header = fields[0];
      if (header == null) {
        continue;
      }
      Message message =
          Message.getRootAsMessage(ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN));
      if (schema == null) {
        schema = MessageSerializer.deserializeSchema(message);
        root = VectorSchemaRoot.create(schema, allocator);
        continue;
      }
      byte[] body = fields[1] == null ? new byte[0] : fields[1];
      ArrowBuf buf = allocator.buffer(Math.max(body.length, 1));
      buf.setBytes(0, body);
      // deserializeRecordBatch takes over buf (it releases it once the batch holds its slices).
      try (ArrowRecordBatch batch = MessageSerializer.deserializeRecordBatch(message, buf)) {
        new VectorLoader(root).load(batch);
      }
    }
    return new Outcome(schema, root, Status.OK);
  }

  /** {data_header, data_body} of a FlightData message. */
  private static byte[][] parse(byte[] flightData) throws IOException {
    byte[][] out = new byte[2][];
    ByteArrayInputStream in = new ByteArrayInputStream(flightData);
    while (in.available() > 0) {
      long tag = varint(in);
      byte[] value = in.readNBytes((int) varint(in));
      if (tag >>> 3 == 2) {
        out[0] = value;
      } else if (tag >>> 3 == 1000) {
        out[1] = value;
      }
    }
    return out;
  }

  private static long varint(InputStream in) throws IOException {
    long value = 0;
    for (int shift = 0; ; shift += 7) {
      int b = in.read();
      value |= (long) (b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        return value;
      }
    }
  }

  /** The FlightData message that opens a DoExchange: the handler's path and the schema. */
  static byte[] schemaMessage(String handler, Schema schema) {
    return flightData(
        descriptor(handler),
        bytes(MessageSerializer.serializeMetadata(schema, IpcOption.DEFAULT)),
        null);
  }

  /** The FlightData message of one record batch. */
  static byte[] batchMessage(VectorSchemaRoot batch) {
    try (ArrowRecordBatch records = new VectorUnloader(batch).getRecordBatch()) {
      return flightData(
          null,
          bytes(MessageSerializer.serializeMetadata(records, IpcOption.DEFAULT)),
          body(records));
    }
  }

  private static byte[] descriptor(String path) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.write(0x08); // type = PATH (1)
    out.write(1);
    field(out, 3, path.getBytes(StandardCharsets.UTF_8));
    return out.toByteArray();
  }

  private static byte[] flightData(byte[] descriptor, byte[] header, byte[] body) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    if (descriptor != null) {
      field(out, 1, descriptor);
    }
    field(out, 2, header);
    if (body != null) {
      field(out, 1000, body);
    }
    return out.toByteArray();
  }

  static void field(ByteArrayOutputStream out, int number, byte[] value) {
    writeVarint(out, ((long) number << 3) | 2);
    writeVarint(out, value.length);
    out.writeBytes(value);
  }

  private static void writeVarint(ByteArrayOutputStream out, long value) {
    while ((value & ~0x7fL) != 0) {
      out.write((int) ((value & 0x7f) | 0x80));
      value >>>= 7;
    }
    out.write((int) value);
  }

  private static byte[] bytes(ByteBuffer buffer) {
    byte[] out = new byte[buffer.remaining()];
    buffer.get(out);
    return out;
  }

  /** The IPC body: every buffer at the offset the record batch's layout gives it. */
  private static byte[] body(ArrowRecordBatch batch) {
    byte[] out = new byte[(int) batch.computeBodyLength()];
    List<ArrowBuf> buffers = batch.getBuffers();
    List<ArrowBuffer> layout = batch.getBuffersLayout();
    for (int i = 0; i < buffers.size(); i++) {
      ArrowBuf buf = buffers.get(i);
      buf.getBytes(0, out, (int) layout.get(i).getOffset(), (int) buf.readableBytes());
    }
    return out;
  }
}
