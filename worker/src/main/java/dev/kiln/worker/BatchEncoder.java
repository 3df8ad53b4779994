package dev.kiln.worker;

import static dev.kiln.worker.FrameIO.INT;
import static dev.kiln.worker.FrameIO.LONG;
import static dev.kiln.worker.FrameIO.MAX_PAYLOAD;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import dev.kiln.worker.FrameIO.Encoded;
import dev.kiln.worker.FrameIO.FrameTooLarge;
import dev.kiln.worker.FrameIO.Sink;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.apache.arrow.memory.ArrowBuf;
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
import org.apache.arrow.vector.types.pojo.ArrowType;

/**
 * Arrow columns to the runner wire: the worker's BATCH frames, columnar and little-endian, which
 * the Python runner decodes at C speed ({@code memoryview.cast}) without pyarrow. The full text is
 * {@code runner/PROTOCOL.md} next to the runner; in short:
 *
 * <pre>
 * BATCH 0x10 := rows:u32  first_row:u32  argc:u16  result:typedesc  column(rows) × argc
 * typedesc   := code:u8  nullable:u8  [DECIMAL: precision:u8 scale:u8 | ARRAY: typedesc |
 *               MAP: typedesc typedesc | TUPLE: count:u16 typedesc × count | VECTOR: dim:u32]
 * column(n)  := code:u8  flags:u8  [params]  [validity: u8 × n if flags bit 0]  body
 * </pre>
 *
 * <p>Bodies: fixed width {@code n × width}; strings, binary and VARIANT either joined by a
 * separator byte none of them contains ({@link TypeCode#SEPARATED}: {@code sep:u8 length:u64
 * bytes}) or {@code offsets:i64 × (n+1)} then the bytes; DECIMAL {@code precision:u8 scale:u8
 * width:u8} then {@code n × width} two's complement integers; ARRAY offsets then the item column;
 * MAP offsets then the key and the value columns; TUPLE {@code count:u16} then one column per
 * field; VECTOR {@code dim:u32} then {@code n × dim} float32. {@link ResultDecoder} reads the same
 * columns back.
 */
final class BatchEncoder {

  private BatchEncoder() {}

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
    Sink s = new Sink(FrameIO.BATCH, estimate);
    try {
      s.u32(rows).u32(start).u16(inputs.size());
      writeTypeDesc(s, resultType);
      for (int c = 0; c < inputs.size(); c++) {
        writeColumn(s, inputs.get(c), inputTypes.get(c), start, rows);
      }
    } catch (FrameTooLarge e) {
      throw new KilnException(
          ErrorCode.INVALID_CALL,
          "this batch of "
              + rows
              + " rows holds more than the 2 GiB a runner batch can carry; lower"
              + " external_server_request_batch_rows in Databend");
    }
    return s.finish();
  }

  private static void writeTypeDesc(Sink s, DataType t) {
    s.u8(TypeCode.of(t).code).u8(t.nullable() ? 1 : 0);
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
    int code = TypeCode.of(t).code;
    boolean nulls = hasNulls(v, start, n);
    s.u8(code).u8(nulls ? TypeCode.HAS_NULLS : 0);
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
    boolean nulls = (s.buf[flagsAt] & TypeCode.HAS_NULLS) != 0;
    if (v instanceof BaseVariableWidthViewVector view
        && writeViewsSeparated(s, view, start, n, nulls)) {
      s.buf[flagsAt] |= (byte) TypeCode.SEPARATED;
      return;
    }
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
    out[flagsAt] |= (byte) TypeCode.SEPARATED;
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

  /**
   * Each encoding thread's array for a slice's views, kept between batches: 16 bytes a row, a MiB
   * for Databend's 65,536-row batches, which a new array per batch made the second largest source
   * of the worker's garbage.
   */
  private static final ThreadLocal<byte[]> VIEWS = ThreadLocal.withInitial(() -> new byte[0]);

  private static byte[] viewScratch(int bytes) {
    byte[] views = VIEWS.get();
    if (views.length < bytes) {
      views = new byte[bytes];
      VIEWS.set(views);
    }
    return views;
  }

  /**
   * Utf8View and BinaryView values (what Databend sends for strings) straight from their views into
   * the frame, joined by byte 0: one copy per value and no intermediate array. Afterwards the
   * written bytes must hold exactly the separators' zeros, else no value may be joined by 0: then
   * nothing counts as written ({@code s.pos} stays) and this returns false.
   */
  private static boolean writeViewsSeparated(
      Sink s, BaseVariableWidthViewVector view, int start, int n, boolean nulls) {
    int size = BaseVariableWidthViewVector.ELEMENT_SIZE;
    byte[] views = viewScratch(n * size);
    view.getDataBuffer().getBytes((long) start * size, views, 0, n * size);
    ArrowBuf bitmap = view.getValidityBuffer();
    long total = Math.max(n - 1, 0);
    for (int i = 0; i < n; i++) {
      if (!nulls || BitVectorHelper.get(bitmap, start + i) != 0) {
        total += (int) INT.get(views, i * size);
      }
    }
    if (total > MAX_PAYLOAD) {
      throw new FrameTooLarge();
    }
    s.ensure(9 + total);
    byte[] out = s.buf;
    int header = s.pos;
    int pos = header + 9;
    List<ArrowBuf> buffers = view.getDataBuffers();
    for (int i = 0; i < n; i++) {
      if (i > 0) {
        out[pos++] = 0;
      }
      if (nulls && BitVectorHelper.get(bitmap, start + i) == 0) {
        continue;
      }
      pos += copyView(views, i * size, buffers, out, pos);
    }
    if (zeroBytes(out, header + 9, pos) != Math.max(n - 1, 0)) {
      return false;
    }
    out[header] = 0;
    LONG.set(out, header + 1, total);
    s.pos = pos;
    return true;
  }

  /**
   * Copies the value of the view at {@code views[at]} to {@code out[pos]}: from inside the view
   * when it is short, else from the data buffer it names. Returns its length.
   */
  private static int copyView(byte[] views, int at, List<ArrowBuf> buffers, byte[] out, int pos) {
    int length = (int) INT.get(views, at);
    if (length <= BaseVariableWidthViewVector.INLINE_SIZE) {
      System.arraycopy(views, at + 4, out, pos, length);
    } else {
      int bufferIndex = (int) INT.get(views, at + 8);
      int bufferOffset = (int) INT.get(views, at + 12);
      buffers.get(bufferIndex).getBytes(bufferOffset, out, pos, length);
    }
    return length;
  }

  /** How many bytes of {@code a[from, to)} are 0, eight at a time. */
  static int zeroBytes(byte[] a, int from, int to) {
    int count = 0;
    int i = from;
    for (; i + 8 <= to; i += 8) {
      long x = (long) LONG.get(a, i);
      // A byte's top bit ends up set exactly when the byte is not 0; no carry crosses bytes.
      long nonZero = (((x & 0x7F7F7F7F7F7F7F7FL) + 0x7F7F7F7F7F7F7F7FL) | x) & 0x8080808080808080L;
      count += 8 - Long.bitCount(nonZero);
    }
    for (; i < to; i++) {
      if (a[i] == 0) {
        count++;
      }
    }
    return count;
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
      throw new FrameTooLarge();
    }
    byte[] data = new byte[(int) total];
    List<ArrowBuf> buffers = view.getDataBuffers();
    int offset = 0;
    for (int i = 0; i < n; i++) {
      offsets[i] = offset;
      if (valid != null && valid[i] == 0) {
        continue;
      }
      offset += copyView(views, i * size, buffers, data, offset);
    }
    offsets[n] = offset;
    return new Gathered(data, offsets);
  }
}
