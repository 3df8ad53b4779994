package dev.kiln.worker;

import io.grpc.HasByteBuffer;
import io.grpc.MethodDescriptor;
import io.grpc.ServerMethodDefinition;
import io.grpc.Status;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandles;
import java.lang.reflect.Constructor;
import java.nio.ByteBuffer;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flight.impl.Flight;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.OutOfMemoryException;
import org.apache.arrow.vector.ipc.message.MessageMetadataResult;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads DoExchange's incoming FlightData messages (Flight.proto) straight from gRPC's buffers into
 * Arrow memory. Arrow Java 19 reads every message body through a new heap array of the body's size
 * and then copies that into Arrow memory: with Databend's 1 MiB mini-batches that array was two
 * thirds of everything the worker allocated under load (the fast-client benchmark at 256 calls in
 * flight; G1 places arrays of half a region or more straight into the old generation, and their
 * churn started concurrent collections). Here the body is copied once, from the network buffers
 * gRPC already holds ({@link HasByteBuffer}), into an Arrow buffer.
 *
 * <p>The parsed message is Flight's own message type, built with its constructor for received
 * messages, so the rest of Flight (its stream, its record batch loading) is unchanged. That
 * constructor is not public: when it cannot be reached (another Arrow version), {@link #bind} is
 * not used and Flight parses as before. A schema's Decimal64 fields are rewritten here as {@link
 * Decimal64Schemas} does for other methods.
 */
final class ExchangeMessages implements MethodDescriptor.Marshaller<Object> {

  private static final Logger log = LoggerFactory.getLogger(ExchangeMessages.class);

  /** FlightData fields (Flight.proto). */
  private static final int DESCRIPTOR = 1;

  private static final int DATA_HEADER = 2;
  private static final int APP_METADATA = 3;
  private static final int DATA_BODY = 1000;

  /** Protobuf wire types. */
  private static final int VARINT = 0;

  private static final int FIXED64 = 1;
  private static final int LENGTH_DELIMITED = 2;
  private static final int FIXED32 = 5;

  /** Copy steps of a stream that cannot lend its buffers. */
  private static final int CHUNK = 64 << 10;

  /** Flight's constructor for a received message, or null when this Arrow Java hides it. */
  private static final MethodHandle RECEIVED = receivedMessage();

  private final BufferAllocator allocator;
  private final MethodDescriptor.Marshaller<Object> flight;

  private ExchangeMessages(BufferAllocator allocator, MethodDescriptor.Marshaller<Object> flight) {
    this.allocator = allocator;
    this.flight = flight;
  }

  /** Whether DoExchange messages can be parsed here (else Flight parses them). */
  static boolean available() {
    return RECEIVED != null;
  }

  /**
   * Flight's DoExchange method with its requests parsed here; its handler, response marshaller and
   * descriptor otherwise as Flight made them.
   */
  @SuppressWarnings("unchecked")
  static <Q, R> ServerMethodDefinition<Q, R> bind(
      ServerMethodDefinition<Q, R> doExchange, BufferAllocator allocator) {
    MethodDescriptor<Q, R> method = doExchange.getMethodDescriptor();
    MethodDescriptor.Marshaller<Q> parser =
        (MethodDescriptor.Marshaller<Q>)
            new ExchangeMessages(
                allocator, (MethodDescriptor.Marshaller<Object>) method.getRequestMarshaller());
    return ServerMethodDefinition.create(
        method.toBuilder(parser, method.getResponseMarshaller()).build(),
        doExchange.getServerCallHandler());
  }

  @Override
  public InputStream stream(Object message) {
    return flight.stream(message);
  }

  @Override
  public Object parse(InputStream in) {
    Flight.FlightDescriptor descriptor = null;
    MessageMetadataResult header = null;
    ArrowBuf metadata = null;
    ArrowBuf body = null;
    try {
      for (long tag = Decimal64Schemas.readVarint(in);
          tag >= 0;
          tag = Decimal64Schemas.readVarint(in)) {
        int field = (int) (tag >>> 3);
        int wire = (int) (tag & 7);
        if (wire != LENGTH_DELIMITED) {
          skip(in, wire, field);
          continue;
        }
        long length = Decimal64Schemas.readVarint(in);
        if (length < 0 || length > Integer.MAX_VALUE) {
          throw new IOException("field " + field + " claims " + length + " bytes");
        }
        switch (field) {
          case DESCRIPTOR -> descriptor = Flight.FlightDescriptor.parseFrom(bytes(in, length));
          case DATA_HEADER -> header = header(bytes(in, length));
          case APP_METADATA -> {
            release(metadata);
            metadata = read(in, length);
          }
          case DATA_BODY -> {
            release(body);
            body = read(in, length);
          }
          default -> in.skipNBytes(length);
        }
      }
      if (header != null) {
        byte type = header.headerType();
        if (type == MessageHeader.Schema && body != null && body.capacity() == 0) {
          body.close();
          body = null;
        } else if ((type == MessageHeader.RecordBatch || type == MessageHeader.DictionaryBatch)
            && body == null) {
          body = allocator.getEmpty();
        }
      }
      return RECEIVED.invoke(descriptor, header, metadata, body);
    } catch (Throwable e) {
      release(metadata);
      release(body);
      throw refusal(e);
    }
  }

  /**
   * What a call whose message could not be parsed gets: RESOURCE_EXHAUSTED when the worker has no
   * memory for it, INVALID_ARGUMENT otherwise; a JVM Error is thrown as it is.
   */
  private static RuntimeException refusal(Throwable e) {
    if (e instanceof Error error) {
      throw error;
    }
    Status status =
        e instanceof OutOfMemoryException
            ? Status.RESOURCE_EXHAUSTED.withDescription(
                "the Kiln worker has no memory left for this batch ("
                    + e.getMessage()
                    + "); run the query again when fewer run at once")
            : Status.INVALID_ARGUMENT.withDescription(
                "the call sent a FlightData message Kiln cannot read ("
                    + e.getMessage()
                    + "); a DoExchange sends Arrow IPC messages as Flight.proto's FlightData");
    return status.withCause(e).asRuntimeException();
  }

  /**
   * The IPC message header, a Decimal64 schema rewritten as Arrow Java can read it (only a schema
   * is looked at: every batch's header comes through here).
   */
  private static MessageMetadataResult header(byte[] bytes) {
    MessageMetadataResult header =
        MessageMetadataResult.create(ByteBuffer.wrap(bytes), bytes.length);
    if (header.headerType() != MessageHeader.Schema) {
      return header;
    }
    byte[] rewritten = Decimal64Schemas.rewriteHeader(bytes);
    return rewritten == null
        ? header
        : MessageMetadataResult.create(ByteBuffer.wrap(rewritten), rewritten.length);
  }

  /**
   * {@code length} bytes of the stream in a new Arrow buffer: from the stream's own buffers where
   * it lends them (gRPC's do), else through a small array.
   */
  private ArrowBuf read(InputStream in, long length) throws IOException {
    ArrowBuf buf = allocator.buffer(length);
    try {
      long at = 0;
      if (in instanceof HasByteBuffer lender && lender.byteBufferSupported()) {
        while (at < length) {
          ByteBuffer next = lender.getByteBuffer();
          if (next == null || !next.hasRemaining()) {
            throw new EOFException("the message ended " + (length - at) + " bytes early");
          }
          int n = (int) Math.min(next.remaining(), length - at);
          next.limit(next.position() + n);
          buf.setBytes(at, next);
          in.skipNBytes(n);
          at += n;
        }
      } else {
        byte[] chunk = new byte[(int) Math.min(length, CHUNK)];
        while (at < length) {
          int n = in.read(chunk, 0, (int) Math.min(chunk.length, length - at));
          if (n < 0) {
            throw new EOFException("the message ended " + (length - at) + " bytes early");
          }
          buf.setBytes(at, chunk, 0, n);
          at += n;
        }
      }
      buf.writerIndex(length);
      return buf;
    } catch (IOException | RuntimeException e) {
      buf.close();
      throw e;
    }
  }

  private static byte[] bytes(InputStream in, long length) throws IOException {
    byte[] b = in.readNBytes((int) length);
    if (b.length < length) {
      throw new EOFException("the message ended " + (length - b.length) + " bytes early");
    }
    return b;
  }

  private static void skip(InputStream in, int wire, int field) throws IOException {
    switch (wire) {
      case VARINT -> {
        if (Decimal64Schemas.readVarint(in) < 0) {
          throw new EOFException("the message ended inside field " + field);
        }
      }
      case FIXED64 -> in.skipNBytes(8);
      case FIXED32 -> in.skipNBytes(4);
      default -> throw new IOException("field " + field + " has protobuf wire type " + wire);
    }
  }

  private static void release(ArrowBuf buf) {
    if (buf != null) {
      buf.close();
    }
  }

  private static MethodHandle receivedMessage() {
    try {
      Class<?> message = Class.forName("org.apache.arrow.flight.ArrowMessage");
      Constructor<?> c =
          message.getDeclaredConstructor(
              Flight.FlightDescriptor.class,
              MessageMetadataResult.class,
              ArrowBuf.class,
              ArrowBuf.class);
      c.setAccessible(true);
      return MethodHandles.lookup().unreflectConstructor(c);
    } catch (ReflectiveOperationException | RuntimeException e) {
      log.info(
          "Arrow Flight parses DoExchange messages itself (through a heap array per message):"
              + " its constructor for received messages is out of reach ({})",
          e.toString());
      return null;
    }
  }
}
