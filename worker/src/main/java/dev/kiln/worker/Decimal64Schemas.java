package dev.kiln.worker;

import io.grpc.ForwardingServerCallListener;
import io.grpc.Metadata;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.flatbuf.Decimal;
import org.apache.arrow.flatbuf.KeyValue;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.Type;
import org.apache.arrow.vector.ipc.message.IpcOption;
import org.apache.arrow.vector.ipc.message.MessageSerializer;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Lets Arrow Java read what Databend Query sends for DECIMAL(p ≤ 18): Decimal64, which Arrow Java
 * 19 rejects while parsing the schema ("Library only supports 128-bit and 256-bit decimal values"),
 * so no producer code would ever see the call.
 *
 * <p>{@link ExchangeMessages} rewrites the schema of a DoExchange as it parses the message; for
 * DoPut (and DoExchange where Flight parses its own messages) a gRPC interceptor sees each incoming
 * FlightData message as raw bytes, before Flight parses it. A schema message with a Decimal64 field
 * is rewritten: the field becomes FixedSizeBinary(8) with {@value ArrowTypes#DECIMAL64_KEY} =
 * "precision,scale" in its metadata. FixedSizeBinary(8) has exactly Decimal64's buffers (validity,
 * then 8 bytes a value), so the record batches that follow load unchanged and the 8-byte values
 * reach the runner as they are ({@link ArrowTypes#accepts}, {@link BatchEncoder}). Every other
 * message passes through untouched and uncopied: the interceptor only peeks at its small header.
 */
final class Decimal64Schemas {

  /** FlightData fields (Flight.proto) and protobuf wire types. */
  private static final int DATA_HEADER = 2;

  private static final int DATA_BODY = 1000;
  private static final int LENGTH_DELIMITED = 2;

  /** A schema message larger than this is not looked at (real ones are a few KiB). */
  static final int MAX_HEADER_BYTES = 1 << 20;

  private Decimal64Schemas() {}

  /** Rewrites Decimal64 schema messages of DoExchange and DoPut; leaves everything else. */
  static final class Interceptor implements ServerInterceptor {
    @Override
    public <Q, R> ServerCall.Listener<Q> interceptCall(
        ServerCall<Q, R> call, Metadata headers, ServerCallHandler<Q, R> next) {
      ServerCall.Listener<Q> listener = next.startCall(call, headers);
      String method = call.getMethodDescriptor().getBareMethodName();
      if (!"DoExchange".equals(method) && !"DoPut".equals(method)) {
        return listener;
      }
      return new ForwardingServerCallListener.SimpleForwardingServerCallListener<>(listener) {
        @Override
        @SuppressWarnings("unchecked")
        public void onMessage(Q message) {
          if (message instanceof InputStream in) {
            byte[] rewritten = rewrite(in);
            if (rewritten != null) {
              super.onMessage((Q) new ByteArrayInputStream(rewritten));
              return;
            }
          }
          super.onMessage(message);
        }
      };
    }
  }

  /**
   * The FlightData message in {@code in} with its schema's Decimal64 fields rewritten, or null
   * (with {@code in} back at its start) when there is nothing to rewrite.
   */
  static byte[] rewrite(InputStream in) {
    if (!in.markSupported()) {
      return null;
    }
    try {
      in.mark(Integer.MAX_VALUE);
      byte[] header;
      try {
        header = peekHeader(in);
      } finally {
        in.reset();
      }
      if (header == null) {
        return null;
      }
      byte[] schema = rewriteHeader(header);
      if (schema == null) {
        return null;
      }
      return replaceHeader(in.readAllBytes(), schema);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** The data_header bytes of a FlightData message, or null when it has none before its body. */
  private static byte[] peekHeader(InputStream in) throws IOException {
    while (true) {
      long tag = readVarint(in);
      if (tag < 0 || (tag & 7) != LENGTH_DELIMITED) {
        return null;
      }
      long length = readVarint(in);
      int field = (int) (tag >>> 3);
      if (length < 0 || field == DATA_BODY) {
        return null;
      }
      if (field == DATA_HEADER) {
        return length > MAX_HEADER_BYTES ? null : in.readNBytes((int) length);
      }
      in.skipNBytes(length);
    }
  }

  /** A new IPC message header for a schema with Decimal64 fields; null for any other header. */
  static byte[] rewriteHeader(byte[] header) {
    ByteBuffer bb = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN);
    Message message = Message.getRootAsMessage(bb);
    if (message.headerType() != MessageHeader.Schema) {
      return null;
    }
    org.apache.arrow.flatbuf.Schema schema =
        (org.apache.arrow.flatbuf.Schema) message.header(new org.apache.arrow.flatbuf.Schema());
    boolean found = false;
    for (int i = 0; i < schema.fieldsLength() && !found; i++) {
      found = hasDecimal64(schema.fields(i));
    }
    if (!found) {
      return null;
    }
    List<Field> fields = new ArrayList<>();
    for (int i = 0; i < schema.fieldsLength(); i++) {
      fields.add(convert(schema.fields(i)));
    }
    Map<String, String> metadata = new HashMap<>();
    for (int i = 0; i < schema.customMetadataLength(); i++) {
      KeyValue kv = schema.customMetadata(i);
      metadata.put(kv.key() == null ? "" : kv.key(), kv.value() == null ? "" : kv.value());
    }
    ByteBuffer out =
        MessageSerializer.serializeMetadata(new Schema(fields, metadata), IpcOption.DEFAULT);
    byte[] bytes = new byte[out.remaining()];
    out.get(bytes);
    return bytes;
  }

  private static boolean isDecimal64(org.apache.arrow.flatbuf.Field field) {
    return field.typeType() == Type.Decimal
        && ((Decimal) field.type(new Decimal())).bitWidth() == 64;
  }

  private static boolean hasDecimal64(org.apache.arrow.flatbuf.Field field) {
    if (isDecimal64(field)) {
      return true;
    }
    for (int i = 0; i < field.childrenLength(); i++) {
      if (hasDecimal64(field.children(i))) {
        return true;
      }
    }
    return false;
  }

  /** Arrow Java's own conversion, except for Decimal64 fields and their parents. */
  private static Field convert(org.apache.arrow.flatbuf.Field field) {
    if (!hasDecimal64(field)) {
      return Field.convertField(field);
    }
    Map<String, String> metadata = new HashMap<>();
    for (int i = 0; i < field.customMetadataLength(); i++) {
      KeyValue kv = field.customMetadata(i);
      metadata.put(kv.key() == null ? "" : kv.key(), kv.value() == null ? "" : kv.value());
    }
    if (isDecimal64(field)) {
      Decimal d = (Decimal) field.type(new Decimal());
      return new Field(
          field.name(),
          new FieldType(
              field.nullable(),
              new ArrowType.FixedSizeBinary(8),
              null,
              ArrowTypes.decimal64Metadata(metadata, d.precision(), d.scale())),
          List.of());
    }
    List<Field> children = new ArrayList<>();
    for (int i = 0; i < field.childrenLength(); i++) {
      children.add(convert(field.children(i)));
    }
    return new Field(
        field.name(),
        new FieldType(
            field.nullable(),
            ArrowType.getTypeForField(field),
            null,
            metadata.isEmpty() ? null : metadata),
        children);
  }

  /** The FlightData message with its data_header field replaced; other fields kept in order. */
  private static byte[] replaceHeader(byte[] flightData, byte[] header) throws IOException {
    ByteArrayInputStream in = new ByteArrayInputStream(flightData);
    ByteArrayOutputStream out = new ByteArrayOutputStream(flightData.length + header.length);
    while (in.available() > 0) {
      long tag = readVarint(in);
      if ((tag & 7) != LENGTH_DELIMITED) {
        throw new IOException("unexpected protobuf wire type " + (tag & 7) + " in FlightData");
      }
      long length = readVarint(in);
      byte[] value = in.readNBytes((int) length);
      writeVarint(out, tag);
      if ((tag >>> 3) == DATA_HEADER) {
        value = header;
      }
      writeVarint(out, value.length);
      out.write(value);
    }
    return out.toByteArray();
  }

  /** A protobuf varint, or -1 at the end of the stream. */
  static long readVarint(InputStream in) throws IOException {
    long value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      int b = in.read();
      if (b < 0) {
        return -1;
      }
      value |= (long) (b & 0x7f) << shift;
      if ((b & 0x80) == 0) {
        return value;
      }
    }
    throw new IOException("malformed varint in FlightData");
  }

  private static void writeVarint(ByteArrayOutputStream out, long value) {
    while ((value & ~0x7fL) != 0) {
      out.write((int) ((value & 0x7f) | 0x80));
      value >>>= 7;
    }
    out.write((int) value);
  }
}
