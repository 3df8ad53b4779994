package dev.kiln.worker;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BaseFixedWidthVector;
import org.apache.arrow.vector.BaseLargeVariableWidthVector;
import org.apache.arrow.vector.BaseVariableWidthVector;
import org.apache.arrow.vector.BaseVariableWidthViewVector;
import org.apache.arrow.vector.BitVector;
import org.apache.arrow.vector.BitVectorHelper;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.complex.FixedSizeListVector;
import org.apache.arrow.vector.complex.LargeListVector;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.complex.StructVector;
import org.apache.arrow.vector.ipc.message.ArrowFieldNode;
import org.apache.arrow.vector.types.pojo.ArrowType;

/**
 * The worker's half of the runner protocol: columnar, little-endian, length-prefixed frames that
 * the Python runner decodes at C speed ({@code memoryview.cast}) without pyarrow. The full text is
 * {@code runner/PROTOCOL.md} next to the runner; in short:
 *
 * <pre>
 * frame      := length:u32  type:u8  payload[length]
 * BATCH 0x10 := rows:u32  first_row:u32  argc:u16  result:typedesc  column(rows) × argc
 * RESULT 0x11 := rows:u32  row_errors:u32  column(rows)
 * typedesc   := code:u8  nullable:u8  [DECIMAL: precision:u8 scale:u8 | ARRAY: typedesc |
 *               MAP: typedesc typedesc | TUPLE: count:u16 typedesc × count | VECTOR: dim:u32]
 * column(n)  := code:u8  flags:u8  [params]  [validity: u8 × n if flags bit 0]  body
 * </pre>
 *
 * <p>Bodies: fixed width {@code n × width}; strings, binary and VARIANT either joined by a
 * separator byte none of them contains ({@link #SEPARATED}: {@code sep:u8 length:u64 bytes}) or
 * {@code offsets:i64 × (n+1)} then the bytes; DECIMAL {@code precision:u8 scale:u8 width:u8} then
 * {@code n × width} two's complement integers; ARRAY offsets then the item column; MAP offsets then
 * the key and the value columns; TUPLE {@code count:u16} then one column per field; VECTOR {@code
 * dim:u32} then {@code n × dim} float32.
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
  static final int DECIMAL = 16;
  static final int VARIANT = 17;
  static final int ARRAY = 18;
  static final int MAP = 19;
  static final int TUPLE = 20;
  static final int VECTOR = 21;

  static final int HAS_NULLS = 0x01;

  /**
   * STRING, BINARY, VARIANT column flag: the values are joined by a separator byte that occurs in
   * none of them ({@code sep:u8 length:u64 bytes}) instead of offsets then bytes; Python splits
   * them at C speed instead of slicing each one.
   */
  static final int SEPARATED = 0x02;

  static final int FRAME_HEADER_BYTES = 5;
  static final int BATCH_HEADER_BYTES = 10;
  static final int RESULT_HEADER_BYTES = 8;

  /** Frames must fit a Java array. */
  static final long MAX_PAYLOAD = Integer.MAX_VALUE - 64;

  private static final VarHandle SHORT =
      MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);
  private static final VarHandle INT =
      MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
  private static final VarHandle LONG =
      MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

  private WireFormat() {}

  /** One frame as read from the runner. */
  record Frame(int type, byte[] payload) {}

  /** A frame to send: the first {@code length} bytes of {@code bytes}, header included. */
  record Encoded(byte[] bytes, int length) {}

  /** The runner sent bytes that do not follow the protocol. */
  static final class MalformedFrameException extends IOException {
    MalformedFrameException(String message) {
      super(message);
    }
  }

  /** The wire type code of a declared type. */
  static int typeCode(DataType type) {
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
      case DATE -> DATE;
      case TIMESTAMP -> TIMESTAMP;
      case DECIMAL -> DECIMAL;
      case VARIANT -> VARIANT;
      case ARRAY -> ARRAY;
      case MAP -> MAP;
      case TUPLE -> TUPLE;
      case VECTOR -> VECTOR;
    };
  }

  /** Checks that a type fits the wire's fixed-size fields (it practically always does). */
  static void requireEncodable(DataType type) throws KilnException {
    if (type.kind() == DataType.Kind.TUPLE && type.children().size() > 0xffff) {
      throw new KilnException(
          ErrorCode.UNSUPPORTED_TYPE,
          "a TUPLE with " + type.children().size() + " fields is too wide (at most 65535)");
    }
    for (DataType child : type.children()) {
      requireEncodable(child);
    }
  }

  /** Bytes per value of a fixed-width type code (DECIMAL: see the column), or 0. */
  static int width(int code) {
    return switch (code) {
      case BOOLEAN, INT8, UINT8 -> 1;
      case INT16, UINT16 -> 2;
      case INT32, UINT32, FLOAT32, DATE -> 4;
      case INT64, UINT64, FLOAT64, TIMESTAMP -> 8;
      default -> 0;
    };
  }

  /** Wire width of a DECIMAL result of this precision: the Arrow type the worker builds. */
  static int decimalResultWidth(DataType type) {
    return type.precision() > 38 ? 32 : 16;
  }

  // ------------------------------------------------------------------ BATCH

  /**
   * Encodes a BATCH frame (header included) for rows {@code [start, start + rows)} of the inputs.
   * Each vector must already match its declared type ({@link ArrowTypes#accepts}); {@code start}
   * goes along as {@code first_row}, so the runner's errors name rows of the whole batch.
   */
  static Encoded encodeBatch(
      List<FieldVector> inputs, List<DataType> inputTypes, int start, int rows, DataType resultType)
      throws KilnException {
    long estimate = 64;
    for (FieldVector v : inputs) {
      double share = v.getValueCount() == 0 ? 0 : (double) rows / v.getValueCount();
      estimate += (long) (v.getBufferSize() * share) + 10L * rows + 64;
    }
    Sink s = new Sink(estimate);
    try {
      s.u32(0).u8(BATCH); // length patched below
      s.u32(rows).u32(start).u16(inputs.size());
      writeTypeDesc(s, resultType);
      for (int c = 0; c < inputs.size(); c++) {
        writeColumn(s, inputs.get(c), inputTypes.get(c), start, rows);
      }
    } catch (BatchTooLarge e) {
      throw new KilnException(
          ErrorCode.INVALID_CALL,
          "this batch of "
              + rows
              + " rows holds more than the 2 GiB a runner batch can carry; lower"
              + " external_server_request_batch_rows in Databend");
    }
    INT.set(s.buf, 0, s.pos - FRAME_HEADER_BYTES);
    return new Encoded(s.buf, s.pos);
  }

  private static void writeTypeDesc(Sink s, DataType t) {
    s.u8(typeCode(t)).u8(t.nullable() ? 1 : 0);
    switch (t.kind()) {
      case DECIMAL -> s.u8(t.precision()).u8(t.scale());
      case ARRAY -> writeTypeDesc(s, t.children().get(0));
      case MAP -> {
        writeTypeDesc(s, t.children().get(0));
        writeTypeDesc(s, t.children().get(1));
      }
      case TUPLE -> {
        s.u16(t.children().size());
        for (DataType child : t.children()) {
          writeTypeDesc(s, child);
        }
      }
      case VECTOR -> s.u32(t.dimension());
      default -> {}
    }
  }

  private static void writeColumn(Sink s, FieldVector v, DataType t, int start, int n) {
    int code = typeCode(t);
    boolean nulls = hasNulls(v, start, n);
    s.u8(code).u8(nulls ? HAS_NULLS : 0);
    int flagsAt = s.pos - 1;
    switch (t.kind()) {
      case DECIMAL ->
          s.u8(t.precision()).u8(t.scale()).u8(((BaseFixedWidthVector) v).getTypeWidth());
      case TUPLE -> s.u16(t.children().size());
      case VECTOR -> s.u32(t.dimension());
      default -> {}
    }
    if (nulls) {
      expandBits(v.getValidityBuffer(), start, n, s);
    }
    switch (t.kind()) {
      case BOOLEAN -> expandBits(((BitVector) v).getDataBuffer(), start, n, s);
      case STRING, BINARY, VARIANT -> writeVarWidth(s, v, start, n, flagsAt);
      case TIMESTAMP -> writeTimestamps(s, (BaseFixedWidthVector) v, start, n);
      case DECIMAL,
          DATE,
          INT8,
          INT16,
          INT32,
          INT64,
          UINT8,
          UINT16,
          UINT32,
          UINT64,
          FLOAT32,
          FLOAT64 -> {
        BaseFixedWidthVector fixed = (BaseFixedWidthVector) v;
        int w = fixed.getTypeWidth();
        s.copy(fixed.getDataBuffer(), (long) start * w, (long) n * w);
      }
      case ARRAY, MAP -> {
        long[] range = writeOffsets(s, v, start, n);
        FieldVector data =
            v instanceof ListVector l ? l.getDataVector() : ((LargeListVector) v).getDataVector();
        int from = Math.toIntExact(range[0]);
        int count = Math.toIntExact(range[1] - range[0]);
        if (t.kind() == DataType.Kind.ARRAY) {
          writeColumn(s, data, t.children().get(0), from, count);
        } else {
          List<FieldVector> kv = ((StructVector) data).getChildrenFromFields();
          writeColumn(s, kv.get(0), t.children().get(0), from, count);
          writeColumn(s, kv.get(1), t.children().get(1), from, count);
        }
      }
      case TUPLE -> {
        List<FieldVector> fields = ((StructVector) v).getChildrenFromFields();
        for (int i = 0; i < t.children().size(); i++) {
          writeColumn(s, fields.get(i), t.children().get(i), start, n);
        }
      }
      case VECTOR -> {
        FixedSizeListVector list = (FixedSizeListVector) v;
        BaseFixedWidthVector items = (BaseFixedWidthVector) list.getDataVector();
        long dim = t.dimension();
        s.copy(items.getDataBuffer(), start * dim * 4, n * dim * 4);
      }
    }
  }

  private static boolean hasNulls(FieldVector v, int start, int n) {
    if (n == 0 || v.getNullCount() == 0) {
      return false;
    }
    if (start == 0 && n == v.getValueCount()) {
      return true;
    }
    ArrowBuf validity = v.getValidityBuffer();
    for (int i = start; i < start + n; i++) {
      if (BitVectorHelper.get(validity, i) == 0) {
        return true;
      }
    }
    return false;
  }

  /** Arrow's bitmap (LSB first) from bit {@code start}: one byte per row, 0 or 1. */
  private static void expandBits(ArrowBuf bitmap, int start, int n, Sink s) {
    s.ensure(n);
    byte[] out = s.buf;
    int pos = s.pos;
    if ((start & 7) == 0) {
      byte[] packed = new byte[(n + 7) / 8];
      bitmap.getBytes(start >>> 3, packed, 0, packed.length);
      for (int i = 0; i < n; i++) {
        out[pos + i] = (byte) ((packed[i >>> 3] >>> (i & 7)) & 1);
      }
    } else {
      for (int i = 0; i < n; i++) {
        out[pos + i] = (byte) BitVectorHelper.get(bitmap, start + i);
      }
    }
    s.pos = pos + n;
  }

  private static void writeTimestamps(Sink s, BaseFixedWidthVector v, int start, int n) {
    ArrowType.Timestamp type = (ArrowType.Timestamp) v.getField().getType();
    ArrowBuf data = v.getDataBuffer();
    if (type.getUnit() == org.apache.arrow.vector.types.TimeUnit.MICROSECOND) {
      s.copy(data, 8L * start, 8L * n);
      return;
    }
    s.ensure(8L * n);
    for (int i = 0; i < n; i++) {
      long raw = data.getLong(8L * (start + i));
      long micros =
          switch (type.getUnit()) {
            case SECOND -> raw * 1_000_000L;
            case MILLISECOND -> raw * 1_000L;
            case NANOSECOND -> Math.floorDiv(raw, 1_000L);
            case MICROSECOND -> raw;
          };
      LONG.set(s.buf, s.pos, micros);
      s.pos += 8;
    }
  }

  /** Writes {@code n + 1} offsets rebased to 0; returns the child range {from, to}. */
  private static long[] writeOffsets(Sink s, FieldVector v, int start, int n) {
    ArrowBuf offsets = v.getOffsetBuffer();
    boolean large = v instanceof LargeListVector;
    s.ensure(8L * (n + 1));
    long base = n == 0 && v.getValueCount() == 0 ? 0 : offset(offsets, large, start);
    long last = base;
    for (int i = 0; i <= n; i++) {
      last = n == 0 && v.getValueCount() == 0 ? 0 : offset(offsets, large, start + i);
      LONG.set(s.buf, s.pos, last - base);
      s.pos += 8;
    }
    return new long[] {base, last};
  }

  private static long offset(ArrowBuf offsets, boolean large, int i) {
    return large ? offsets.getLong(8L * i) : offsets.getInt(4L * i);
  }

  /**
   * Values of a variable-width column, gathered: value i is {@code data[offsets[i], offsets[i+1])}.
   */
  private record Gathered(byte[] data, long[] offsets) {}

  /**
   * Writes a STRING, BINARY or VARIANT column body: joined by a separator byte when some ASCII byte
   * occurs in none of the values (almost always: text rarely holds control characters), else as
   * offsets and bytes.
   */
  private static void writeVarWidth(Sink s, FieldVector v, int start, int n, int flagsAt) {
    Gathered values = gather(v, start, n);
    byte[] data = values.data();
    long[] offsets = values.offsets();
    int length = (int) offsets[n];
    int sep = absentAsciiByte(data, length);
    if (sep < 0) {
      s.ensure(8L * (n + 1) + length);
      for (int i = 0; i <= n; i++) {
        LONG.set(s.buf, s.pos + 8 * i, offsets[i]);
      }
      s.pos += 8 * (n + 1);
      System.arraycopy(data, 0, s.buf, s.pos, length);
      s.pos += length;
      return;
    }
    long total = (long) length + Math.max(n - 1, 0);
    s.ensure(9 + total);
    byte[] out = s.buf;
    out[flagsAt] |= (byte) SEPARATED;
    out[s.pos] = (byte) sep;
    LONG.set(out, s.pos + 1, total);
    int pos = s.pos + 9;
    for (int i = 0; i < n; i++) {
      if (i > 0) {
        out[pos++] = (byte) sep;
      }
      int from = (int) offsets[i];
      int len = (int) (offsets[i + 1] - from);
      System.arraycopy(data, from, out, pos, len);
      pos += len;
    }
    s.pos = pos;
  }

  /** The smallest byte 0..127 that occurs nowhere in {@code data[0, length)}, or -1. */
  static int absentAsciiByte(byte[] data, int length) {
    // Almost always 0 is absent. A Latin-1 String's indexOf is a vectorised JDK intrinsic,
    // several times faster than a byte loop even with the copy.
    if (new String(data, 0, length, StandardCharsets.ISO_8859_1).indexOf(0) < 0) {
      return 0;
    }
    boolean[] seen = new boolean[128];
    int distinct = 0;
    for (int i = 0; i < length; i++) {
      int b = data[i];
      if (b >= 0 && !seen[b]) {
        seen[b] = true;
        if (++distinct == 128) {
          return -1;
        }
      }
    }
    for (int b = 0; b < 128; b++) {
      if (!seen[b]) {
        return b;
      }
    }
    return -1;
  }

  /**
   * Squeezes the values joined by {@code sep} in {@code src[at, end)} together at {@code at}:
   * {@code o[r]} becomes where value r starts (relative to {@code at}), {@code o[rows]} the total
   * length. Returns the number of separators, rows - 1 when well formed (it stops at a separator
   * beyond that, returning rows).
   */
  static int squeezeSeparated(byte[] src, int at, int end, byte sep, int rows, long[] o) {
    final long ones = 0x0101010101010101L;
    final long low7 = 0x7F7F7F7F7F7F7F7FL;
    long pattern = ones * (sep & 0xff);
    int row = 0;
    int w = at; // where the next value's bytes go
    int from = at; // where the current value's bytes start in src
    int i = at;
    while (true) {
      int found = -1;
      // Exact per byte (no borrow between bytes): high bit set where a byte equals sep.
      for (; i + 8 <= end; i += 8) {
        long x = (long) LONG.get(src, i) ^ pattern;
        long z = ~(((x & low7) + low7) | x | low7);
        if (z != 0) {
          found = i + (Long.numberOfTrailingZeros(z) >>> 3);
          break;
        }
      }
      if (found < 0) {
        for (; i < end; i++) {
          if (src[i] == sep) {
            found = i;
            break;
          }
        }
      }
      if (found < 0) {
        break;
      }
      int len = found - from;
      if (w != from) {
        System.arraycopy(src, from, src, w, len);
      }
      w += len;
      if (++row >= rows) {
        return row; // a separator after the last value: malformed
      }
      o[row] = w - at;
      from = found + 1;
      i = found + 1;
    }
    int len = end - from;
    if (w != from) {
      System.arraycopy(src, from, src, w, len);
    }
    w += len;
    if (rows > 0) {
      o[rows] = w - at;
    }
    return row;
  }

  /** Rows {@code [start, start + n)} of a variable-width vector, as one array and offsets. */
  private static Gathered gather(FieldVector v, int start, int n) {
    long[] offsets = new long[n + 1];
    if (v instanceof BaseVariableWidthVector vw) {
      ArrowBuf buf = vw.getOffsetBuffer();
      long base = vw.getValueCount() == 0 ? 0 : buf.getInt(4L * start);
      for (int i = 0; i <= n; i++) {
        offsets[i] = (vw.getValueCount() == 0 ? 0 : buf.getInt(4L * (start + i))) - base;
      }
      byte[] data = new byte[(int) offsets[n]];
      vw.getDataBuffer().getBytes(base, data, 0, data.length);
      return new Gathered(data, offsets);
    }
    if (v instanceof BaseLargeVariableWidthVector lv) {
      ArrowBuf buf = lv.getOffsetBuffer();
      long base = lv.getValueCount() == 0 ? 0 : buf.getLong(8L * start);
      for (int i = 0; i <= n; i++) {
        offsets[i] = (lv.getValueCount() == 0 ? 0 : buf.getLong(8L * (start + i))) - base;
      }
      byte[] data = new byte[(int) offsets[n]];
      lv.getDataBuffer().getBytes(base, data, 0, data.length);
      return new Gathered(data, offsets);
    }
    return gatherViews((BaseVariableWidthViewVector) v, start, n, offsets);
  }

  /**
   * Utf8View and BinaryView (what Databend sends for strings): short values live inside their
   * 16-byte view, long ones in a variadic data buffer. The views are copied out once and read from
   * a Java array, which is much cheaper than a bounds-checked ArrowBuf read per field.
   */
  private static Gathered gatherViews(
      BaseVariableWidthViewVector view, int start, int n, long[] offsets) {
    int size = BaseVariableWidthViewVector.ELEMENT_SIZE;
    byte[] views = new byte[n * size];
    view.getDataBuffer().getBytes((long) start * size, views, 0, views.length);
    byte[] valid = null;
    if (hasNulls(view, start, n)) {
      valid = new byte[n];
      ArrowBuf bitmap = view.getValidityBuffer();
      for (int i = 0; i < n; i++) {
        valid[i] = (byte) BitVectorHelper.get(bitmap, start + i);
      }
    }
    long total = 0;
    for (int i = 0; i < n; i++) {
      if (valid == null || valid[i] != 0) {
        total += (int) INT.get(views, i * size);
      }
    }
    if (total > MAX_PAYLOAD) {
      throw new BatchTooLarge();
    }
    byte[] data = new byte[(int) total];
    List<ArrowBuf> buffers = view.getDataBuffers();
    int offset = 0;
    for (int i = 0; i < n; i++) {
      offsets[i] = offset;
      if (valid != null && valid[i] == 0) {
        continue;
      }
      int at = i * size;
      int length = (int) INT.get(views, at);
      if (length <= BaseVariableWidthViewVector.INLINE_SIZE) {
        System.arraycopy(views, at + 4, data, offset, length);
      } else {
        int bufferIndex = (int) INT.get(views, at + 8);
        int bufferOffset = (int) INT.get(views, at + 12);
        buffers.get(bufferIndex).getBytes(bufferOffset, data, offset, length);
      }
      offset += length;
    }
    offsets[n] = offset;
    return new Gathered(data, offsets);
  }

  /** A batch outgrew what one frame can carry. */
  private static final class BatchTooLarge extends RuntimeException {
    BatchTooLarge() {
      super(null, null, false, false);
    }
  }

  /** A growable little-endian byte array; frames are written straight from it. */
  private static final class Sink {
    byte[] buf;
    int pos;

    Sink(long estimate) {
      buf = new byte[(int) Math.min(Math.max(estimate, 64), MAX_PAYLOAD)];
    }

    void ensure(long more) {
      long need = pos + more;
      if (need <= buf.length) {
        return;
      }
      if (need > MAX_PAYLOAD + FRAME_HEADER_BYTES) {
        throw new BatchTooLarge();
      }
      buf = Arrays.copyOf(buf, (int) Math.min(Math.max(need, 2L * buf.length), MAX_PAYLOAD + 64));
    }

    Sink u8(int v) {
      ensure(1);
      buf[pos++] = (byte) v;
      return this;
    }

    Sink u16(int v) {
      ensure(2);
      SHORT.set(buf, pos, (short) v);
      pos += 2;
      return this;
    }

    Sink u32(int v) {
      ensure(4);
      INT.set(buf, pos, v);
      pos += 4;
      return this;
    }

    void copy(ArrowBuf from, long at, long length) {
      ensure(length);
      from.getBytes(at, buf, pos, (int) length);
      pos += (int) length;
    }
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
    long length = Integer.toUnsignedLong((int) INT.get(header, 0));
    int type = header[4] & 0xff;
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

  /** A decoded RESULT: the column, and how many rows failed and were set to NULL. */
  record Result(FieldVector vector, int rowErrors) {}

  /**
   * Decodes a RESULT payload into a new vector named {@code output} of the declared result type,
   * allocated from {@code allocator}; the caller owns it.
   */
  static Result decodeResult(
      byte[] payload, int rows, DataType resultType, BufferAllocator allocator)
      throws MalformedFrameException {
    return decodeResults(List.of(payload), new int[] {rows}, resultType, allocator);
  }

  /**
   * Decodes the RESULT payloads of consecutive slices of one batch into one vector, in order: each
   * buffer is allocated once at its full size and filled from every slice.
   */
  static Result decodeResults(
      List<byte[]> payloads, int[] rows, DataType resultType, BufferAllocator allocator)
      throws MalformedFrameException {
    List<Part> parts = new ArrayList<>(payloads.size());
    int rowErrors = 0;
    for (int s = 0; s < payloads.size(); s++) {
      ByteBuffer bb = ByteBuffer.wrap(payloads.get(s)).order(ByteOrder.LITTLE_ENDIAN);
      need(bb, RESULT_HEADER_BYTES, "the result header");
      int gotRows = bb.getInt();
      rowErrors += bb.getInt();
      if (gotRows != rows[s]) {
        throw new MalformedFrameException(
            "the result has " + gotRows + " rows, expected " + rows[s]);
      }
      parts.add(new Part(bb, rows[s]));
    }
    FieldVector vector;
    try {
      vector = ArrowTypes.field(ArrowTypes.RESULT_FIELD, resultType).createVector(allocator);
    } catch (KilnException e) {
      throw new IllegalArgumentException(e.getMessage(), e);
    }
    try {
      new ColumnReader(allocator).read(parts, vector, resultType, "the result");
      for (Part part : parts) {
        if (part.bb().hasRemaining()) {
          throw new MalformedFrameException(
              part.bb().remaining() + " bytes after the result column");
        }
      }
      return new Result(vector, rowErrors);
    } catch (MalformedFrameException | RuntimeException e) {
      vector.close();
      throw e;
    }
  }

  /** One slice's payload, positioned at its next column, and that column's row count. */
  private record Part(ByteBuffer bb, int rows) {
    byte[] array() {
      return bb.array();
    }
  }

  /**
   * Loads wire columns into Arrow vectors through {@link FieldVector#loadFieldBuffers}. A column
   * may come in several parts (slices); each node reads its own section from every part, then its
   * children from every part, which is the order in which each part lays them out.
   */
  private record ColumnReader(BufferAllocator allocator) {

    void read(List<Part> parts, FieldVector v, DataType t, String what)
        throws MalformedFrameException {
      int total = totalRows(parts);
      int[] validityAt = new int[parts.size()];
      boolean[] separated = new boolean[parts.size()];
      boolean anyNulls = false;
      for (int s = 0; s < parts.size(); s++) {
        long header = readHeader(parts.get(s), t, what);
        validityAt[s] = (int) header;
        separated[s] = (header >>> 32) != 0;
        anyNulls |= validityAt[s] >= 0;
      }
      List<ArrowBuf> buffers = new ArrayList<>(3);
      try {
        int nullCount = 0;
        if (anyNulls) {
          ArrowBuf bitmap = allocator.buffer((total + 7) / 8);
          buffers.add(bitmap);
          nullCount = packValidity(parts, validityAt, bitmap);
        } else {
          buffers.add(allocator.getEmpty());
        }
        ArrowFieldNode node = new ArrowFieldNode(total, nullCount);
        switch (t.kind()) {
          case BOOLEAN -> {
            for (Part p : parts) {
              need(p.bb(), p.rows(), what + " values");
            }
            ArrowBuf bitmap = allocator.buffer((total + 7) / 8);
            buffers.add(bitmap);
            packValues(parts, bitmap);
            v.loadFieldBuffers(node, buffers);
          }
          case STRING, BINARY, VARIANT -> {
            readStrings(parts, separated, total, what, buffers);
            v.loadFieldBuffers(node, buffers);
          }
          case ARRAY -> {
            long[] counts = readOffsets(parts, what, buffers, true);
            v.loadFieldBuffers(node, buffers);
            read(
                children(parts, counts),
                ((LargeListVector) v).getDataVector(),
                t.children().get(0),
                what);
          }
          case MAP -> {
            long[] counts = readOffsets(parts, what, buffers, false);
            v.loadFieldBuffers(node, buffers);
            StructVector kv = (StructVector) ((ListVector) v).getDataVector();
            List<Part> entries = children(parts, counts);
            int entryCount = 0;
            for (Part p : entries) {
              entryCount += p.rows();
            }
            try (ArrowBuf none = allocator.getEmpty()) {
              kv.loadFieldBuffers(new ArrowFieldNode(entryCount, 0), List.of(none));
            }
            List<FieldVector> fields = kv.getChildrenFromFields();
            read(entries, fields.get(0), t.children().get(0), what + " keys");
            read(entries, fields.get(1), t.children().get(1), what + " values");
          }
          case TUPLE -> {
            v.loadFieldBuffers(node, buffers);
            List<FieldVector> fields = ((StructVector) v).getChildrenFromFields();
            for (int i = 0; i < t.children().size(); i++) {
              read(parts, fields.get(i), t.children().get(i), what + " field " + (i + 1));
            }
          }
          case VECTOR -> {
            v.loadFieldBuffers(node, buffers);
            long dim = t.dimension();
            try (ArrowBuf none = allocator.getEmpty();
                ArrowBuf data = copyValues(parts, 4 * dim, what)) {
              ((FixedSizeListVector) v)
                  .getDataVector()
                  .loadFieldBuffers(new ArrowFieldNode(toInt(total * dim), 0), List.of(none, data));
            }
          }
          default -> {
            long w = t.kind() == DataType.Kind.DECIMAL ? decimalResultWidth(t) : width(typeCode(t));
            buffers.add(copyValues(parts, w, what));
            v.loadFieldBuffers(node, buffers);
          }
        }
      } finally {
        // loadFieldBuffers took its own references.
        buffers.forEach(ArrowBuf::close);
      }
    }

    /**
     * STRING, BINARY and VARIANT parts, in either layout, as one offsets buffer and one data buffer
     * (added to {@code buffers}).
     */
    private void readStrings(
        List<Part> parts, boolean[] separated, int total, String what, List<ArrowBuf> buffers)
        throws MalformedFrameException {
      long[][] offsets = new long[parts.size()][];
      int[] dataAt = new int[parts.size()];
      long bytes = 0;
      for (int s = 0; s < parts.size(); s++) {
        Part p = parts.get(s);
        ByteBuffer bb = p.bb();
        long[] o = new long[p.rows() + 1];
        if (separated[s]) {
          need(bb, 9, what + " separator");
          byte sep = bb.get();
          long length = bb.getLong();
          need(bb, length, what + " data");
          int at = bb.position();
          byte[] src = bb.array();
          // Note where each value starts and squeeze the separators out, in place (the payload
          // is ours): separators are found 8 bytes at a time, values moved by arraycopy.
          int rows = p.rows();
          int end = at + (int) length;
          int row = squeezeSeparated(src, at, end, sep, rows, o);
          if (rows == 0 ? length != 0 : row != rows - 1) {
            throw new MalformedFrameException(
                what + " holds " + (row + 1) + " separated values, expected " + rows);
          }
          dataAt[s] = at;
          bb.position(end);
        } else {
          need(bb, 8L * (p.rows() + 1), what + " offsets");
          int at = bb.position();
          long previous = 0;
          for (int i = 0; i <= p.rows(); i++) {
            long offset = (long) LONG.get(p.array(), at + 8 * i);
            if ((i == 0 && offset != 0) || offset < previous) {
              throw new MalformedFrameException(
                  what + ": offset " + i + " is " + offset + " after " + previous);
            }
            o[i] = previous = offset;
          }
          need(bb, 8L * (p.rows() + 1) + previous, what + " data");
          dataAt[s] = at + 8 * (p.rows() + 1);
          bb.position(dataAt[s] + (int) previous);
        }
        offsets[s] = o;
        bytes += o[p.rows()];
      }
      ArrowBuf offsetBuf = allocator.buffer(8L * (total + 1));
      buffers.add(offsetBuf);
      ArrowBuf data = allocator.buffer(bytes);
      buffers.add(data);
      offsetBuf.setLong(0, 0);
      long base = 0;
      int row = 0;
      for (int s = 0; s < parts.size(); s++) {
        long[] o = offsets[s];
        int rows = parts.get(s).rows();
        byte[] src = parts.get(s).array();
        for (int i = 1; i <= rows; i++) {
          offsetBuf.setLong(8L * (row + i), base + o[i]);
        }
        data.setBytes(base, src, dataAt[s], o[rows]);
        base += o[rows];
        row += rows;
      }
    }

    /**
     * Checks a part's column header. Returns where its validity bytes are (or -1 without) in the
     * low 32 bits, and 1 in the high ones for a SEPARATED string column.
     */
    private long readHeader(Part part, DataType t, String what) throws MalformedFrameException {
      ByteBuffer bb = part.bb();
      int expected = typeCode(t);
      need(bb, 2, what + " header");
      int code = bb.get() & 0xff;
      int flags = bb.get() & 0xff;
      if (code != expected) {
        throw new MalformedFrameException(
            what + " has type code " + code + ", expected " + expected + " (" + t + ")");
      }
      boolean hasNulls = (flags & HAS_NULLS) != 0;
      if (hasNulls && !t.nullable()) {
        throw new MalformedFrameException("NULLs in " + what + ", declared " + t);
      }
      switch (t.kind()) {
        case DECIMAL -> {
          need(bb, 3, what + " decimal parameters");
          int precision = bb.get() & 0xff;
          int scale = bb.get() & 0xff;
          int width = bb.get() & 0xff;
          if (precision != t.precision() || scale != t.scale() || width != decimalResultWidth(t)) {
            throw new MalformedFrameException(
                what
                    + " is DECIMAL("
                    + precision
                    + ", "
                    + scale
                    + ") of width "
                    + width
                    + ", expected "
                    + t);
          }
        }
        case TUPLE -> {
          need(bb, 2, what + " field count");
          int count = bb.getShort() & 0xffff;
          if (count != t.children().size()) {
            throw new MalformedFrameException(what + " has " + count + " fields, expected " + t);
          }
        }
        case VECTOR -> {
          need(bb, 4, what + " dimension");
          int dim = bb.getInt();
          if (dim != t.dimension()) {
            throw new MalformedFrameException(what + " has dimension " + dim + ", expected " + t);
          }
        }
        default -> {}
      }
      long separated = (flags & SEPARATED) != 0 ? 1L << 32 : 0;
      if (!hasNulls) {
        return separated | 0xffffffffL;
      }
      need(bb, part.rows(), what + " validity");
      int at = bb.position();
      bb.position(at + part.rows());
      return separated | at;
    }

    /** Fixed-width values of every part, {@code width} bytes a row, in one buffer. */
    private ArrowBuf copyValues(List<Part> parts, long width, String what)
        throws MalformedFrameException {
      long bytes = 0;
      for (Part p : parts) {
        need(p.bb(), width * p.rows(), what + " values");
        bytes += width * p.rows();
      }
      ArrowBuf buf = allocator.buffer(bytes);
      long at = 0;
      for (Part p : parts) {
        long n = width * p.rows();
        buf.setBytes(at, p.array(), p.bb().position(), n);
        p.bb().position(p.bb().position() + (int) n);
        at += n;
      }
      return buf;
    }

    /**
     * Reads each part's {@code rows + 1} i64 offsets, checks them, and adds one offsets buffer for
     * all parts to {@code buffers} (rebased, i32 when not {@code large}). Returns each part's last
     * offset: its child row count or data size.
     */
    private long[] readOffsets(List<Part> parts, String what, List<ArrowBuf> buffers, boolean large)
        throws MalformedFrameException {
      int total = 0;
      long[] counts = new long[parts.size()];
      for (int s = 0; s < parts.size(); s++) {
        Part p = parts.get(s);
        need(p.bb(), 8L * (p.rows() + 1), what + " offsets");
        int at = p.bb().position();
        long previous = 0;
        for (int i = 0; i <= p.rows(); i++) {
          long offset = (long) LONG.get(p.array(), at + 8 * i);
          if ((i == 0 && offset != 0) || offset < previous) {
            throw new MalformedFrameException(
                what + ": offset " + i + " is " + offset + " after " + previous);
          }
          previous = offset;
        }
        counts[s] = previous;
        total += p.rows();
      }
      int width = large ? 8 : 4;
      ArrowBuf out = allocator.buffer((long) width * (total + 1));
      buffers.add(out);
      long base = 0;
      int row = 0;
      out.setZero(0, width);
      for (int s = 0; s < parts.size(); s++) {
        Part p = parts.get(s);
        int at = p.bb().position();
        for (int i = 1; i <= p.rows(); i++) {
          long offset = base + (long) LONG.get(p.array(), at + 8 * i);
          if (large) {
            out.setLong(8L * (row + i), offset);
          } else {
            if (offset > Integer.MAX_VALUE) {
              throw new MalformedFrameException(what + " has more than 2^31 entries");
            }
            out.setInt(4L * (row + i), (int) offset);
          }
        }
        p.bb().position(at + 8 * (p.rows() + 1));
        base += counts[s];
        row += p.rows();
      }
      return counts;
    }

    private static List<Part> children(List<Part> parts, long[] counts)
        throws MalformedFrameException {
      List<Part> children = new ArrayList<>(parts.size());
      for (int s = 0; s < parts.size(); s++) {
        children.add(new Part(parts.get(s).bb(), toInt(counts[s])));
      }
      return children;
    }

    private static int totalRows(List<Part> parts) {
      int total = 0;
      for (Part p : parts) {
        total += p.rows();
      }
      return total;
    }

    /** The parts' validity bytes (or all valid) as one bitmap; returns the NULL count. */
    private static int packValidity(List<Part> parts, int[] validityAt, ArrowBuf bitmap) {
      int nulls = 0;
      int row = 0;
      byte[] packed = new byte[(totalRows(parts) + 7) / 8];
      for (int s = 0; s < parts.size(); s++) {
        Part p = parts.get(s);
        byte[] src = p.array();
        for (int i = 0; i < p.rows(); i++, row++) {
          if (validityAt[s] < 0 || src[validityAt[s] + i] != 0) {
            packed[row >>> 3] |= (byte) (1 << (row & 7));
          } else {
            nulls++;
          }
        }
      }
      bitmap.setBytes(0, packed);
      return nulls;
    }

    /** BOOLEAN values, one byte per row in every part, as one bitmap. */
    private static void packValues(List<Part> parts, ArrowBuf bitmap) {
      int row = 0;
      byte[] packed = new byte[(totalRows(parts) + 7) / 8];
      for (Part p : parts) {
        byte[] src = p.array();
        int at = p.bb().position();
        for (int i = 0; i < p.rows(); i++, row++) {
          if (src[at + i] != 0) {
            packed[row >>> 3] |= (byte) (1 << (row & 7));
          }
        }
        p.bb().position(at + p.rows());
      }
      bitmap.setBytes(0, packed);
    }
  }

  private static int toInt(long value) throws MalformedFrameException {
    if (value > Integer.MAX_VALUE) {
      throw new MalformedFrameException("a nested column has more than 2^31 values");
    }
    return (int) value;
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
