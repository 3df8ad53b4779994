package dev.kiln.worker;

import static dev.kiln.worker.FrameIO.LONG;

import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import dev.kiln.worker.FrameIO.MalformedFrameException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.complex.FixedSizeListVector;
import org.apache.arrow.vector.complex.LargeListVector;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.complex.StructVector;
import org.apache.arrow.vector.ipc.message.ArrowFieldNode;

/**
 * The runner wire to Arrow vectors: decodes the runner's RESULT frames, checking every header and
 * length against the declared result type, into vectors loaded straight from the payload bytes. The
 * columns are those {@link BatchEncoder} writes (PROTOCOL.md, "Columns"):
 *
 * <pre>
 * RESULT 0x11 := rows:u32  row_errors:u32  column(rows)
 * </pre>
 */
final class ResultDecoder {

  static final int RESULT_HEADER_BYTES = 8;

  /** Arrays that string results' offsets are gathered in, kept for the next results. */
  private static final FrameIO.Spares OFFSET_ARRAYS = new FrameIO.Spares(false);

  private ResultDecoder() {}

  /**
   * Squeezes the values joined by {@code sep} in {@code src[at, end)} together at {@code at}. The
   * end of value r (relative to {@code at}, plus {@code base}) becomes offset {@code first + r + 1}
   * of {@code offsets}, Arrow's little-endian 64-bit offsets; offset {@code first} is left as it
   * is. Returns the number of separators, rows - 1 when well formed (it stops at a separator beyond
   * that, returning rows).
   */
  static int squeezeSeparated(
      byte[] src, int at, int end, byte sep, int rows, byte[] offsets, int first, long base) {
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
      LONG.set(offsets, 8 * (first + row), base + w - at);
      from = found + 1;
      i = found + 1;
    }
    int len = end - from;
    if (w != from) {
      System.arraycopy(src, from, src, w, len);
    }
    w += len;
    if (rows > 0) {
      LONG.set(offsets, 8 * (first + rows), base + w - at);
    }
    return row;
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
            long w =
                t.kind() == DataType.Kind.DECIMAL
                    ? TypeCode.decimalResultWidth(t)
                    : TypeCode.of(t).width;
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
      // Every part's offsets go straight into one array (a spare from earlier results), shifted by
      // the bytes of the parts before it, and are copied once: a bounds-checked setLong per row
      // was a tenth of decoding a string result, and arrays per part were a sixth of what the
      // worker allocated under Databend's load.
      int offsetBytes = 8 * (total + 1);
      byte[] offsets = OFFSET_ARRAYS.take(offsetBytes);
      int[] dataAt = new int[parts.size()];
      long[] lengths = new long[parts.size()];
      LONG.set(offsets, 0, 0L);
      long base = 0;
      int first = 0;
      for (int s = 0; s < parts.size(); s++) {
        Part p = parts.get(s);
        ByteBuffer bb = p.bb();
        int rows = p.rows();
        if (separated[s]) {
          need(bb, 9, what + " separator");
          byte sep = bb.get();
          long length = bb.getLong();
          need(bb, length, what + " data");
          int at = bb.position();
          // The values are squeezed together in place (the payload is ours): separators are found
          // 8 bytes at a time, values moved by arraycopy.
          int end = at + (int) length;
          int row = squeezeSeparated(p.array(), at, end, sep, rows, offsets, first, base);
          if (rows == 0 ? length != 0 : row != rows - 1) {
            throw new MalformedFrameException(
                what + " holds " + (row + 1) + " separated values, expected " + rows);
          }
          dataAt[s] = at;
          lengths[s] = rows == 0 ? 0 : (long) LONG.get(offsets, 8 * (first + rows)) - base;
          bb.position(end);
        } else {
          need(bb, 8L * (rows + 1), what + " offsets");
          int at = bb.position();
          long previous = 0;
          for (int i = 0; i <= rows; i++) {
            long offset = (long) LONG.get(p.array(), at + 8 * i);
            if ((i == 0 && offset != 0) || offset < previous) {
              throw new MalformedFrameException(
                  what + ": offset " + i + " is " + offset + " after " + previous);
            }
            if (i > 0) {
              LONG.set(offsets, 8 * (first + i), base + offset);
            }
            previous = offset;
          }
          need(bb, 8L * (rows + 1) + previous, what + " data");
          dataAt[s] = at + 8 * (rows + 1);
          lengths[s] = previous;
          bb.position(dataAt[s] + (int) previous);
        }
        base += lengths[s];
        first += rows;
      }
      ArrowBuf offsetBuf = allocator.buffer(offsetBytes);
      buffers.add(offsetBuf);
      offsetBuf.setBytes(0, offsets, 0, offsetBytes);
      OFFSET_ARRAYS.give(offsets);
      ArrowBuf data = allocator.buffer(base);
      buffers.add(data);
      long to = 0;
      for (int s = 0; s < parts.size(); s++) {
        data.setBytes(to, parts.get(s).array(), dataAt[s], lengths[s]);
        to += lengths[s];
      }
    }

    /**
     * Checks a part's column header. Returns where its validity bytes are (or -1 without) in the
     * low 32 bits, and 1 in the high ones for a SEPARATED string column.
     */
    private long readHeader(Part part, DataType t, String what) throws MalformedFrameException {
      ByteBuffer bb = part.bb();
      int expected = TypeCode.of(t).code;
      need(bb, 2, what + " header");
      int code = bb.get() & 0xff;
      int flags = bb.get() & 0xff;
      if (code != expected) {
        throw new MalformedFrameException(
            what + " has type code " + code + ", expected " + expected + " (" + t + ")");
      }
      boolean hasNulls = (flags & TypeCode.HAS_NULLS) != 0;
      if (hasNulls && !t.nullable()) {
        throw new MalformedFrameException("NULLs in " + what + ", declared " + t);
      }
      switch (t.kind()) {
        case DECIMAL -> {
          need(bb, 3, what + " decimal parameters");
          int precision = bb.get() & 0xff;
          int scale = bb.get() & 0xff;
          int width = bb.get() & 0xff;
          if (precision != t.precision()
              || scale != t.scale()
              || width != TypeCode.decimalResultWidth(t)) {
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
      long separated = (flags & TypeCode.SEPARATED) != 0 ? 1L << 32 : 0;
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
