package dev.kiln.worker;

import dev.kiln.resolver.DataType;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.List;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BaseFixedWidthVector;
import org.apache.arrow.vector.BaseLargeVariableWidthVector;
import org.apache.arrow.vector.BaseVariableWidthVector;
import org.apache.arrow.vector.BaseVariableWidthViewVector;
import org.apache.arrow.vector.BitVector;
import org.apache.arrow.vector.FieldVector;

/**
 * The worker's half of the runner protocol: columnar, little-endian, length-prefixed frames that
 * the Python runner decodes at C speed ({@code memoryview.cast}) without pyarrow. The same text is
 * in {@code runner/PROTOCOL.md} next to the runner.
 *
 * <pre>
 * frame      := length:u32  type:u8  payload[length]      (length counts the payload only)
 *
 * worker → runner
 *   BATCH 0x10    := rows:u32  argc:u16  result_type:u8  result_flags:u8  column × argc
 *                    (result_flags bit 0: the result is nullable)
 * runner → worker
 *   READY 0x01       := UTF-8 JSON {"protocol":1, "handler", "pid", "python"}
 *   LOAD_ERROR 0x02  := UTF-8 JSON {"type", "message", "line", "text", "file"} (null when unknown)
 *   RESULT 0x11      := rows:u32  column
 *   BATCH_ERROR 0x12 := UTF-8 JSON {"message", "kind": "user" | "input" | "internal"}
 *
 * column     := type:u8  flags:u8  [validity: u8 × rows, 1 = value, 0 = NULL; only if flags bit 0]
 *               values
 * values     := fixed width: rows × width bytes (BOOLEAN: one byte, 0 or 1)
 *               STRING, BINARY: offsets: i64 × (rows + 1), from 0, non-decreasing;
 *                               data: offsets[rows] bytes (STRING: UTF-8)
 * </pre>
 *
 * <p>Type codes: 1 BOOLEAN, 2 INT8, 3 INT16, 4 INT32, 5 INT64, 6 UINT8, 7 UINT16, 8 UINT32, 9
 * UINT64, 10 FLOAT32, 11 FLOAT64, 12 STRING, 13 BINARY, 14 DATE (i32 days since 1970-01-01), 15
 * TIMESTAMP (i64 microseconds since 1970-01-01, no zone). Values under a NULL are unspecified. The
 * runner answers each BATCH with exactly one RESULT or BATCH_ERROR; stdin EOF ends it.
 */
final class WireFormat {

  static final int READY = 0x01;
  static final int LOAD_ERROR = 0x02;
  static final int BATCH = 0x10;
  static final int RESULT = 0x11;
  static final int BATCH_ERROR = 0x12;

  static final int BOOLEAN = 1;
  static final int INT8 = 2;
  static final int INT16 = 3;
  static final int INT32 = 4;
  static final int INT64 = 5;
  static final int UINT8 = 6;
  static final int UINT16 = 7;
  static final int UINT32 = 8;
  static final int UINT64 = 9;
  static final int FLOAT32 = 10;
  static final int FLOAT64 = 11;
  static final int STRING = 12;
  static final int BINARY = 13;
  static final int DATE = 14;
  static final int TIMESTAMP = 15;

  static final int HAS_NULLS = 0x01;
  static final int RESULT_NULLABLE = 0x01;

  static final int FRAME_HEADER_BYTES = 5;
  static final int BATCH_HEADER_BYTES = 8;
  static final int RESULT_HEADER_BYTES = 6;

  /** Frames must fit a Java array. */
  static final long MAX_PAYLOAD = Integer.MAX_VALUE - 64;

  private WireFormat() {}

  /** One frame as read from the runner. */
  record Frame(int type, byte[] payload) {}

  /** The runner sent bytes that do not follow the protocol. */
  static final class MalformedFrameException extends IOException {
    MalformedFrameException(String message) {
      super(message);
    }
  }

  /** The wire type code of a type the wire carries today; throws for those it does not yet. */
  static int typeCode(DataType type) throws UdfException {
    return switch (type.kind()) {
      case BOOLEAN -> BOOLEAN;
      case INT8 -> INT8;
      case INT16 -> INT16;
      case INT32 -> INT32;
      case INT64 -> INT64;
      case UINT8 -> UINT8;
      case UINT16 -> UINT16;
      case UINT32 -> UINT32;
      case UINT64 -> UINT64;
      case FLOAT32 -> FLOAT32;
      case FLOAT64 -> FLOAT64;
      case STRING -> STRING;
      case BINARY -> BINARY;
      default ->
          throw new UdfException(
              UdfException.Kind.BAD_INPUT,
              type.baseName()
                  + " is not supported yet by Kiln's Python UDFs (supported: BOOLEAN, TINYINT,"
                  + " SMALLINT, INT, BIGINT and their UNSIGNED forms, FLOAT, DOUBLE, VARCHAR,"
                  + " BINARY); change the function's signature");
    };
  }

  /** Bytes per value of a fixed-width type code, or 0 for variable width. */
  static int width(int code) {
    return switch (code) {
      case BOOLEAN, INT8, UINT8 -> 1;
      case INT16, UINT16 -> 2;
      case INT32, UINT32, FLOAT32, DATE -> 4;
      case INT64, UINT64, FLOAT64, TIMESTAMP -> 8;
      default -> 0;
    };
  }

  // ------------------------------------------------------------------ BATCH

  /**
   * Encodes a whole BATCH frame (header included). Each vector must already match its declared type
   * ({@link ArrowTypes#accepts}); the result type goes along so the runner is stateless.
   */
  static byte[] encodeBatch(
      List<FieldVector> inputs, List<DataType> inputTypes, int rows, DataType resultType)
      throws UdfException {
    long size = FRAME_HEADER_BYTES + BATCH_HEADER_BYTES;
    int[] codes = new int[inputs.size()];
    long[] dataBytes = new long[inputs.size()];
    for (int c = 0; c < inputs.size(); c++) {
      FieldVector v = inputs.get(c);
      codes[c] = typeCode(inputTypes.get(c));
      size += 2;
      if (v.getNullCount() > 0) {
        size += rows;
      }
      int w = width(codes[c]);
      if (w > 0) {
        size += (long) w * rows;
      } else {
        dataBytes[c] = varWidthBytes(v, rows);
        size += 8L * (rows + 1) + dataBytes[c];
      }
    }
    if (size - FRAME_HEADER_BYTES > MAX_PAYLOAD) {
      throw new UdfException(
          UdfException.Kind.BAD_INPUT,
          "this batch of "
              + rows
              + " rows holds "
              + size
              + " bytes, more than the 2 GiB a runner batch can carry; lower"
              + " external_server_request_batch_rows in Databend");
    }
    byte[] out = new byte[(int) size];
    ByteBuffer bb = ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN);
    bb.putInt((int) size - FRAME_HEADER_BYTES).put((byte) BATCH);
    bb.putInt(rows).putShort((short) inputs.size());
    bb.put((byte) typeCode(resultType)).put((byte) (resultType.nullable() ? RESULT_NULLABLE : 0));
    for (int c = 0; c < inputs.size(); c++) {
      writeColumn(bb, inputs.get(c), codes[c], rows, dataBytes[c]);
    }
    if (bb.hasRemaining()) {
      throw new IllegalStateException("batch size mismatch: " + bb.remaining() + " bytes left");
    }
    return out;
  }

  private static long varWidthBytes(FieldVector v, int rows) {
    if (rows == 0) {
      return 0;
    }
    if (v instanceof BaseVariableWidthVector vw) {
      ArrowBuf offsets = vw.getOffsetBuffer();
      return (long) offsets.getInt(4L * rows) - offsets.getInt(0);
    }
    if (v instanceof BaseLargeVariableWidthVector lv) {
      ArrowBuf offsets = lv.getOffsetBuffer();
      return offsets.getLong(8L * rows) - offsets.getLong(0);
    }
    BaseVariableWidthViewVector view = (BaseVariableWidthViewVector) v;
    ArrowBuf views = view.getDataBuffer();
    long total = 0;
    for (int i = 0; i < rows; i++) {
      if (!view.isNull(i)) {
        total += views.getInt((long) i * BaseVariableWidthViewVector.ELEMENT_SIZE);
      }
    }
    return total;
  }

  private static void writeColumn(
      ByteBuffer bb, FieldVector v, int code, int rows, long dataBytes) {
    boolean hasNulls = v.getNullCount() > 0;
    bb.put((byte) code).put((byte) (hasNulls ? HAS_NULLS : 0));
    if (hasNulls) {
      expandBits(v.getValidityBuffer(), rows, bb);
    }
    if (code == BOOLEAN) {
      expandBits(((BitVector) v).getDataBuffer(), rows, bb);
    } else if (width(code) > 0) {
      int bytes = width(code) * rows;
      ((BaseFixedWidthVector) v).getDataBuffer().getBytes(0, bb.array(), bb.position(), bytes);
      bb.position(bb.position() + bytes);
    } else {
      writeVarWidth(bb, v, rows, (int) dataBytes);
    }
  }

  /** Arrow's bitmap (LSB first) to one byte per row, 0 or 1, at the buffer's position. */
  private static void expandBits(ArrowBuf bitmap, int rows, ByteBuffer bb) {
    byte[] packed = new byte[(rows + 7) / 8];
    bitmap.getBytes(0, packed, 0, packed.length);
    byte[] out = bb.array();
    int pos = bb.position();
    for (int i = 0; i < rows; i++) {
      out[pos + i] = (byte) ((packed[i >>> 3] >>> (i & 7)) & 1);
    }
    bb.position(pos + rows);
  }

  /** One byte per row (non-zero = set) to Arrow's bitmap; all set when {@code bytes} is null. */
  private static void packBits(byte[] bytes, int at, int rows, ArrowBuf bitmap) {
    byte[] packed = new byte[(rows + 7) / 8];
    if (bytes == null) {
      Arrays.fill(packed, (byte) 0xff);
      if ((rows & 7) != 0) {
        packed[packed.length - 1] = (byte) ((1 << (rows & 7)) - 1);
      }
    } else {
      for (int i = 0; i < rows; i++) {
        if (bytes[at + i] != 0) {
          packed[i >>> 3] |= (byte) (1 << (i & 7));
        }
      }
    }
    bitmap.setBytes(0, packed, 0, packed.length);
  }

  private static void writeVarWidth(ByteBuffer bb, FieldVector v, int rows, int dataBytes) {
    byte[] out = bb.array();
    int offsetsAt = bb.position();
    int dataAt = offsetsAt + 8 * (rows + 1);
    if (v instanceof BaseVariableWidthVector vw) {
      ArrowBuf offsets = vw.getOffsetBuffer();
      int base = rows == 0 ? 0 : offsets.getInt(0);
      for (int i = 0; i <= rows; i++) {
        bb.putLong(offsetsAt + 8 * i, (long) offsets.getInt(4L * i) - base);
      }
      vw.getDataBuffer().getBytes(base, out, dataAt, dataBytes);
    } else if (v instanceof BaseLargeVariableWidthVector lv) {
      ArrowBuf offsets = lv.getOffsetBuffer();
      long base = rows == 0 ? 0 : offsets.getLong(0);
      for (int i = 0; i <= rows; i++) {
        bb.putLong(offsetsAt + 8 * i, offsets.getLong(8L * i) - base);
      }
      lv.getDataBuffer().getBytes(base, out, dataAt, dataBytes);
    } else {
      // Views: short values live inside the 16-byte view, long ones in a variadic data buffer.
      BaseVariableWidthViewVector view = (BaseVariableWidthViewVector) v;
      ArrowBuf views = view.getDataBuffer();
      List<ArrowBuf> buffers = view.getDataBuffers();
      long offset = 0;
      for (int i = 0; i < rows; i++) {
        bb.putLong(offsetsAt + 8 * i, offset);
        if (view.isNull(i)) {
          continue;
        }
        long at = (long) i * BaseVariableWidthViewVector.ELEMENT_SIZE;
        int length = views.getInt(at);
        int dst = dataAt + (int) offset;
        if (length <= BaseVariableWidthViewVector.INLINE_SIZE) {
          views.getBytes(at + 4, out, dst, length);
        } else {
          int bufferIndex = views.getInt(at + 8);
          int bufferOffset = views.getInt(at + 12);
          buffers.get(bufferIndex).getBytes(bufferOffset, out, dst, length);
        }
        offset += length;
      }
      bb.putLong(offsetsAt + 8 * rows, offset);
    }
    bb.position(dataAt + dataBytes);
  }

  // ------------------------------------------------------------------ frames

  /** Reads one frame; null at a clean end of stream (before the first header byte). */
  static Frame readFrame(InputStream in) throws IOException {
    byte[] header = new byte[FRAME_HEADER_BYTES];
    int first = in.read();
    if (first < 0) {
      return null;
    }
    header[0] = (byte) first;
    readFully(in, header, 1, FRAME_HEADER_BYTES - 1);
    ByteBuffer bb = ByteBuffer.wrap(header).order(ByteOrder.LITTLE_ENDIAN);
    long length = Integer.toUnsignedLong(bb.getInt());
    int type = bb.get() & 0xff;
    if (length > MAX_PAYLOAD) {
      throw new MalformedFrameException("frame of type " + type + " claims " + length + " bytes");
    }
    byte[] payload = new byte[(int) length];
    readFully(in, payload, 0, payload.length);
    return new Frame(type, payload);
  }

  private static void readFully(InputStream in, byte[] b, int off, int len) throws IOException {
    int n = in.readNBytes(b, off, len);
    if (n < len) {
      throw new EOFException("the stream ended inside a frame (" + n + " of " + len + " bytes)");
    }
  }

  // ------------------------------------------------------------------ RESULT

  /**
   * Decodes a RESULT payload into a new vector named {@code output} of the declared result type,
   * allocated from {@code allocator}; the caller owns it.
   */
  static FieldVector decodeResult(
      byte[] payload, int rows, DataType resultType, BufferAllocator allocator)
      throws MalformedFrameException {
    ByteBuffer bb = ByteBuffer.wrap(payload).order(ByteOrder.LITTLE_ENDIAN);
    int code;
    try {
      code = typeCode(resultType);
    } catch (UdfException e) {
      throw new IllegalArgumentException(e.getMessage(), e);
    }
    need(bb, RESULT_HEADER_BYTES, "the result header");
    int gotRows = bb.getInt();
    int gotCode = bb.get() & 0xff;
    int flags = bb.get() & 0xff;
    if (gotRows != rows || gotCode != code) {
      throw new MalformedFrameException(
          "the result has "
              + gotRows
              + " rows of type code "
              + gotCode
              + ", expected "
              + rows
              + " rows of type code "
              + code);
    }
    boolean hasNulls = (flags & HAS_NULLS) != 0;
    if (hasNulls && !resultType.nullable()) {
      throw new MalformedFrameException("NULLs in a result declared " + resultType);
    }
    int validityAt = bb.position();
    if (hasNulls) {
      need(bb, rows, "the validity bytes");
      bb.position(validityAt + rows);
    }
    FieldVector vector;
    try {
      vector = ArrowTypes.field(ArrowTypes.RESULT_FIELD, resultType).createVector(allocator);
    } catch (UdfException e) {
      throw new IllegalArgumentException(e.getMessage(), e);
    }
    try {
      if (code == BOOLEAN) {
        need(bb, rows, "the BOOLEAN values");
        BitVector bits = (BitVector) vector;
        bits.allocateNew(rows);
        packBits(payload, bb.position(), rows, bits.getDataBuffer());
        bb.position(bb.position() + rows);
      } else if (width(code) > 0) {
        int bytes = width(code) * rows;
        need(bb, bytes, "the values");
        BaseFixedWidthVector fixed = (BaseFixedWidthVector) vector;
        fixed.allocateNew(rows);
        fixed.getDataBuffer().setBytes(0, payload, bb.position(), bytes);
        bb.position(bb.position() + bytes);
      } else {
        readVarWidth(bb, (BaseLargeVariableWidthVector) vector, rows);
      }
      if (bb.hasRemaining()) {
        throw new MalformedFrameException(bb.remaining() + " bytes after the result column");
      }
      packBits(hasNulls ? payload : null, validityAt, rows, vector.getValidityBuffer());
      vector.setValueCount(rows);
      return vector;
    } catch (MalformedFrameException | RuntimeException e) {
      vector.close();
      throw e;
    }
  }

  private static void readVarWidth(ByteBuffer bb, BaseLargeVariableWidthVector vector, int rows)
      throws MalformedFrameException {
    int offsetsAt = bb.position();
    need(bb, 8L * (rows + 1), "the offsets");
    long previous = 0;
    for (int i = 0; i <= rows; i++) {
      long offset = bb.getLong(offsetsAt + 8 * i);
      if ((i == 0 && offset != 0) || offset < previous) {
        throw new MalformedFrameException("offset " + i + " is " + offset + " after " + previous);
      }
      previous = offset;
    }
    bb.position(offsetsAt + 8 * (rows + 1));
    need(bb, previous, "the string data");
    vector.allocateNew(Math.max(previous, 1), rows);
    vector.getOffsetBuffer().setBytes(0, bb.array(), offsetsAt, 8L * (rows + 1));
    vector.getDataBuffer().setBytes(0, bb.array(), bb.position(), previous);
    vector.setLastSet(rows - 1);
    bb.position(bb.position() + (int) previous);
  }

  private static void need(ByteBuffer bb, long bytes, String what) throws MalformedFrameException {
    if (bb.remaining() < bytes) {
      throw new MalformedFrameException(
          "the result ends early: "
              + what
              + " need "
              + bytes
              + " bytes, "
              + bb.remaining()
              + " left");
    }
  }
}
