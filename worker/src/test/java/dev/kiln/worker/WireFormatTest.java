package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.io.EOFException;
import java.math.BigDecimal;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The Java half of the runner protocol, byte for byte (PROTOCOL.md). */
class WireFormatTest {

  private BufferAllocator allocator;

  @BeforeEach
  void setUp() {
    allocator = new RootAllocator();
  }

  @AfterEach
  void tearDown() {
    allocator.close();
  }

  private static ByteBuffer le(FrameIO.Encoded frame) {
    return ByteBuffer.wrap(frame.bytes(), 0, frame.length()).order(ByteOrder.LITTLE_ENDIAN);
  }

  @Test
  void aBatchFrameIsHeaderResultTypeThenColumns() throws Exception {
    try (FieldVector ints =
            Vectors.of(allocator, "arg1", new ArrowType.Int(32, true), Arrays.asList(7L, null));
        FieldVector flags =
            Vectors.of(allocator, "arg2", ArrowType.Bool.INSTANCE, List.of(true, false))) {
      FrameIO.Encoded frame =
          BatchEncoder.encodeBatch(
              List.of(ints, flags),
              List.of(Udfs.type("INT"), Udfs.type("BOOLEAN")),
              0,
              2,
              Udfs.type("BIGINT NOT NULL"));

      ByteBuffer bb = le(frame);
      assertThat(bb.getInt()).isEqualTo(frame.length() - 5);
      assertThat(bb.get()).isEqualTo((byte) FrameIO.BATCH);
      assertThat(bb.getInt()).as("rows").isEqualTo(2);
      assertThat(bb.getInt()).as("first row").isZero();
      assertThat(bb.getShort()).as("argc").isEqualTo((short) 2);
      assertThat(bb.get()).as("result type").isEqualTo((byte) TypeCode.INT64.code);
      assertThat(bb.get()).as("result not nullable").isZero();
      // INT32 column with a NULL: type, flags, validity, values
      assertThat(bb.get()).isEqualTo((byte) TypeCode.INT32.code);
      assertThat(bb.get()).isEqualTo((byte) TypeCode.HAS_NULLS);
      assertThat(new byte[] {bb.get(), bb.get()}).containsExactly(1, 0);
      assertThat(bb.getInt()).isEqualTo(7);
      bb.getInt(); // under the NULL: unspecified
      // BOOLEAN column without NULLs: no validity, one byte per value
      assertThat(bb.get()).isEqualTo((byte) TypeCode.BOOLEAN.code);
      assertThat(bb.get()).isZero();
      assertThat(new byte[] {bb.get(), bb.get()}).containsExactly(1, 0);
      assertThat(bb.hasRemaining()).isFalse();
    }
  }

  @Test
  void aSliceCarriesItsRowsAndItsFirstRow() throws Exception {
    List<Object> values = Arrays.asList("a", null, "bb", "a string longer than twelve", "ü");
    try (FieldVector v = Vectors.of(allocator, "arg1", ArrowType.Utf8View.INSTANCE, values)) {
      FrameIO.Encoded frame =
          BatchEncoder.encodeBatch(
              List.of(v), List.of(Udfs.type("VARCHAR")), 2, 3, Udfs.type("INT"));
      ByteBuffer bb = le(frame);
      bb.position(5);
      assertThat(bb.getInt()).isEqualTo(3);
      assertThat(bb.getInt()).isEqualTo(2);
      bb.position(bb.position() + 2 + 2);
      assertThat(bb.get()).isEqualTo((byte) TypeCode.STRING.code);
      assertThat(bb.get())
          .as("no NULL among rows 2..4; joined by a separator")
          .isEqualTo((byte) TypeCode.SEPARATED);
      assertThat(bb.get()).as("separator: the first ASCII byte in no value").isZero();
      assertThat(bb.getLong()).isEqualTo(33);
      byte[] data = new byte[bb.remaining()];
      bb.get(data);
      assertThat(new String(data, StandardCharsets.UTF_8))
          .isEqualTo("bb\0a string longer than twelve\0ü");
    }
  }

  @Test
  void stringsHoldingEveryAsciiByteTravelWithOffsets() throws Exception {
    StringBuilder all = new StringBuilder();
    for (char c = 0; c < 128; c++) {
      all.append(c);
    }
    List<Object> values = Arrays.asList(all.toString(), null, "x");
    for (ArrowType kind : List.of(ArrowType.LargeUtf8.INSTANCE, ArrowType.Utf8View.INSTANCE)) {
      try (FieldVector v = Vectors.of(allocator, "arg1", kind, values)) {
        FrameIO.Encoded frame =
            BatchEncoder.encodeBatch(
                List.of(v), List.of(Udfs.type("VARCHAR")), 0, 3, Udfs.type("INT"));
        ByteBuffer bb = le(frame);
        bb.position(5 + 10 + 2);
        assertThat(bb.get()).isEqualTo((byte) TypeCode.STRING.code);
        assertThat(bb.get()).as("%s", kind).isEqualTo((byte) TypeCode.HAS_NULLS);
        bb.position(bb.position() + 3);
        assertThat(new long[] {bb.getLong(), bb.getLong(), bb.getLong(), bb.getLong()})
            .containsExactly(0, 128, 128, 129);
      }
    }
    assertThat(BatchEncoder.absentAsciiByte(new byte[] {0, 1, 3, (byte) 0xc3}, 4)).isEqualTo(2);
  }

  @Test
  void zeroBytesAreCountedInEveryPosition() {
    byte[] bytes = new byte[37];
    Arrays.fill(bytes, (byte) 0x80);
    assertThat(BatchEncoder.zeroBytes(bytes, 0, bytes.length)).isZero();
    bytes[0] = 0;
    bytes[7] = 0;
    bytes[8] = 0;
    bytes[36] = 0;
    bytes[20] = 1;
    assertThat(BatchEncoder.zeroBytes(bytes, 0, bytes.length)).isEqualTo(4);
    assertThat(BatchEncoder.zeroBytes(bytes, 1, 36)).isEqualTo(2);
    assertThat(BatchEncoder.zeroBytes(new byte[16], 3, 16)).isEqualTo(13);
  }

  @Test
  void aViewSliceWithAZeroByteInsideAValueIsJoinedByAnotherByte() throws Exception {
    List<Object> values =
        Arrays.asList("skipped", "a", null, "longer than twelve \0 with a zero", "b\0", "c");
    byte[] expected = null;
    for (ArrowType kind : List.of(ArrowType.Utf8.INSTANCE, ArrowType.Utf8View.INSTANCE)) {
      try (FieldVector v = Vectors.of(allocator, "arg1", kind, values)) {
        FrameIO.Encoded frame =
            BatchEncoder.encodeBatch(
                List.of(v), List.of(Udfs.type("VARCHAR")), 1, 4, Udfs.type("INT"));
        byte[] bytes = Arrays.copyOf(frame.bytes(), frame.length());
        if (expected == null) {
          expected = bytes;
          ByteBuffer bb = le(frame);
          bb.position(5 + 10 + 2 + 1);
          assertThat(bb.get() & TypeCode.SEPARATED).as("separated").isNotZero();
          bb.position(bb.position() + 4);
          assertThat(bb.get()).as("the smallest byte no value holds").isEqualTo((byte) 1);
        } else {
          assertThat(bytes).as("%s", kind).isEqualTo(expected);
        }
      }
    }
  }

  @Test
  void aFrameWrittenOverARecycledArrayIsTheFrameANewArrayGets() throws Exception {
    List<Object> strings = new java.util.ArrayList<>();
    List<Object> longs = new java.util.ArrayList<>();
    for (int i = 0; i < 5000; i++) {
      strings.add(i % 7 == 0 ? null : "value " + i + (i % 3 == 0 ? " longer than twelve" : ""));
      longs.add(i % 5 == 0 ? null : (long) i * 31);
    }
    try (FieldVector s = Vectors.of(allocator, "arg1", ArrowType.Utf8View.INSTANCE, strings);
        FieldVector l = Vectors.of(allocator, "arg2", new ArrowType.Int(64, true), longs)) {
      FrameIO.BATCH_ARRAYS.clear();
      List<FieldVector> columns = List.of(s, l);
      var types = List.of(Udfs.type("VARCHAR"), Udfs.type("BIGINT"));
      FrameIO.Encoded fresh = BatchEncoder.encodeBatch(columns, types, 0, 5000, Udfs.type("INT"));
      byte[] expected = Arrays.copyOf(fresh.bytes(), fresh.length());
      // Once its runner answered, the array carries the next frame: it holds the old bytes (here
      // scrambled) and nothing of them may show through.
      Arrays.fill(fresh.bytes(), (byte) 0x5a);
      FrameIO.BATCH_ARRAYS.give(fresh.bytes());
      FrameIO.Encoded again = BatchEncoder.encodeBatch(columns, types, 0, 5000, Udfs.type("INT"));
      assertThat(again.bytes()).as("the recycled array").isSameAs(fresh.bytes());
      assertThat(Arrays.copyOf(again.bytes(), again.length())).isEqualTo(expected);
      // A much smaller frame does not keep a large array busy.
      FrameIO.BATCH_ARRAYS.give(again.bytes());
      FrameIO.Encoded small = BatchEncoder.encodeBatch(columns, types, 0, 2, Udfs.type("INT"));
      assertThat(small.bytes()).isNotSameAs(again.bytes());
      FrameIO.BATCH_ARRAYS.clear();
    }
  }

  @Test
  void aResultIsReadIntoAGivenBackArrayOnlyOfItsExactSize() throws Exception {
    FrameIO.RESULT_ARRAYS.clear();
    byte[] spare = new byte[3];
    Arrays.fill(spare, (byte) 0x5a);
    FrameIO.RESULT_ARRAYS.give(spare);
    byte[] wire = {
      3, 0, 0, 0, (byte) FrameIO.RESULT, 1, 2, 3, 4, 0, 0, 0, (byte) FrameIO.RESULT, 9, 9, 9, 9
    };
    ByteArrayInputStream in = new ByteArrayInputStream(wire);
    FrameIO.Frame three = FrameIO.readFrame(in);
    assertThat(three.payload()).isSameAs(spare).containsExactly(1, 2, 3);
    // A payload is its whole array: a spare of another size is not taken.
    FrameIO.RESULT_ARRAYS.give(three.payload());
    FrameIO.Frame four = FrameIO.readFrame(in);
    assertThat(four.payload()).isNotSameAs(spare).containsExactly(9, 9, 9, 9);
    FrameIO.RESULT_ARRAYS.clear();
  }

  @Test
  void stringsOfEveryArrowKindEncodeAlike() throws Exception {
    List<Object> values = Arrays.asList("a", null, "a string longer than twelve", "ü");
    byte[] expected = null;
    for (ArrowType kind :
        List.of(
            ArrowType.Utf8.INSTANCE, ArrowType.LargeUtf8.INSTANCE, ArrowType.Utf8View.INSTANCE)) {
      try (FieldVector v = Vectors.of(allocator, "arg1", kind, values)) {
        FrameIO.Encoded frame =
            BatchEncoder.encodeBatch(
                List.of(v), List.of(Udfs.type("VARCHAR")), 0, 4, Udfs.type("INT"));
        byte[] bytes = Arrays.copyOf(frame.bytes(), frame.length());
        if (expected == null) {
          expected = bytes;
        } else {
          assertThat(bytes).as("%s", kind).isEqualTo(expected);
        }
      }
    }
  }

  @Test
  void nestedColumnsAreOffsetsThenChildren() throws Exception {
    try (FieldVector v =
        Vectors.of(
            allocator,
            RunnerTypesIT.query("ARRAY(INT32 NULL) NULL"),
            Arrays.asList(List.of(1L), null, Arrays.asList(2L, null)))) {
      FrameIO.Encoded frame =
          BatchEncoder.encodeBatch(
              List.of(v),
              List.of(Udfs.type("ARRAY(INT32 NULL) NULL")),
              0,
              3,
              Udfs.type("TUPLE(a DECIMAL(10, 2), b VECTOR(4)) NOT NULL"));
      ByteBuffer bb = le(frame);
      bb.position(5 + 10);
      // result: TUPLE not null, 2 fields: DECIMAL(10, 2), VECTOR(4) (bare nested: NOT NULL)
      assertThat(new byte[] {bb.get(), bb.get()}).containsExactly(TypeCode.TUPLE.code, 0);
      assertThat(bb.getShort()).isEqualTo((short) 2);
      assertThat(new byte[] {bb.get(), bb.get(), bb.get(), bb.get()})
          .containsExactly(TypeCode.DECIMAL.code, 0, 10, 2);
      assertThat(new byte[] {bb.get(), bb.get()}).containsExactly(TypeCode.VECTOR.code, 0);
      assertThat(bb.getInt()).isEqualTo(4);
      // the ARRAY column: flags, validity, offsets, then the INT32 item column
      assertThat(new byte[] {bb.get(), bb.get()})
          .containsExactly(TypeCode.ARRAY.code, TypeCode.HAS_NULLS);
      assertThat(new byte[] {bb.get(), bb.get(), bb.get()}).containsExactly(1, 0, 1);
      assertThat(new long[] {bb.getLong(), bb.getLong(), bb.getLong(), bb.getLong()})
          .containsExactly(0, 1, 1, 3);
      assertThat(new byte[] {bb.get(), bb.get()})
          .containsExactly(TypeCode.INT32.code, TypeCode.HAS_NULLS);
      assertThat(new byte[] {bb.get(), bb.get(), bb.get()}).containsExactly(1, 1, 0);
      assertThat(new int[] {bb.getInt(), bb.getInt()}).containsExactly(1, 2);
      bb.getInt();
      assertThat(bb.hasRemaining()).isFalse();
    }
  }

  private static byte[] result(int rows, byte[]... parts) {
    int size = 8;
    for (byte[] p : parts) {
      size += p.length;
    }
    ByteBuffer bb = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    bb.putInt(rows).putInt(0);
    for (byte[] p : parts) {
      bb.put(p);
    }
    return bb.array();
  }

  private static byte[] longs(long... values) {
    ByteBuffer bb = ByteBuffer.allocate(8 * values.length).order(ByteOrder.LITTLE_ENDIAN);
    for (long v : values) {
      bb.putLong(v);
    }
    return bb.array();
  }

  private static byte[] bytes(int... values) {
    byte[] out = new byte[values.length];
    for (int i = 0; i < values.length; i++) {
      out[i] = (byte) values[i];
    }
    return out;
  }

  @Test
  void resultsDecodeIntoTheDeclaredType() throws Exception {
    byte[] strings =
        result(
            3,
            bytes(TypeCode.STRING.code, TypeCode.HAS_NULLS, 1, 0, 1),
            longs(0, 2, 2, 5),
            "hiyou".getBytes(StandardCharsets.UTF_8));
    try (FieldVector v =
        ResultDecoder.decodeResult(strings, 3, Udfs.type("VARCHAR"), allocator).vector()) {
      assertThat(v.getField().getName()).isEqualTo("output");
      assertThat(v.getField().getType()).isEqualTo(ArrowType.LargeUtf8.INSTANCE);
      assertThat(Vectors.values(v)).containsExactly("hi", null, "you");
    }
    try (FieldVector v =
        ResultDecoder.decodeResult(
                result(2, bytes(TypeCode.INT64.code, 0), longs(-1, 5)),
                2,
                Udfs.type("BIGINT NOT NULL"),
                allocator)
            .vector()) {
      assertThat(v.getField().isNullable()).isFalse();
      assertThat(Vectors.values(v)).containsExactly(-1L, 5L);
    }
    byte[] decimal = new byte[16];
    decimal[0] = (byte) 0x85; // -123 as a 128-bit two's complement integer
    Arrays.fill(decimal, 1, 16, (byte) 0xff);
    byte[] map =
        result(
            2,
            bytes(TypeCode.MAP.code, 0),
            longs(0, 2, 2),
            bytes(TypeCode.STRING.code, 0),
            longs(0, 1, 2),
            "ab".getBytes(StandardCharsets.UTF_8),
            bytes(TypeCode.DECIMAL.code, TypeCode.HAS_NULLS, 5, 2, 16, 1, 0),
            decimal,
            new byte[16]);
    try (FieldVector v =
        ResultDecoder.decodeResult(map, 2, Udfs.type("MAP(STRING, DECIMAL(5, 2) NULL)"), allocator)
            .vector()) {
      assertThat(Vectors.values(v))
          .containsExactly(
              RunnerTypesIT.map("a", new BigDecimal("-1.23"), "b", null), RunnerTypesIT.map());
    }
  }

  @Test
  void separatedResultsAndSlicesJoinInOrder() throws Exception {
    byte[] first =
        result(
            3,
            bytes(TypeCode.STRING.code, TypeCode.SEPARATED | TypeCode.HAS_NULLS, 1, 0, 1, 0),
            longs(7),
            "ab\0\0cde".getBytes(StandardCharsets.UTF_8));
    byte[] second =
        result(
            2,
            bytes(TypeCode.STRING.code, 0),
            longs(0, 1, 4),
            "füx".getBytes(StandardCharsets.UTF_8));
    try (FieldVector v =
        ResultDecoder.decodeResults(
                List.of(first, second), new int[] {3, 2}, Udfs.type("VARCHAR"), allocator)
            .vector()) {
      assertThat(Vectors.values(v)).containsExactly("ab", null, "cde", "f", "üx");
    }
    assertThatThrownBy(
            () ->
                ResultDecoder.decodeResults(
                    List.of(
                        result(
                            3,
                            bytes(TypeCode.STRING.code, TypeCode.SEPARATED, 0),
                            longs(3),
                            "a\0b".getBytes(StandardCharsets.UTF_8))),
                    new int[] {3},
                    Udfs.type("VARCHAR"),
                    allocator))
        .isInstanceOf(FrameIO.MalformedFrameException.class)
        .hasMessageContaining("holds 2 separated values, expected 3");
  }

  @Test
  void malformedResultsAreRejectedWithoutLeaking() {
    assertThatThrownBy(
            () ->
                ResultDecoder.decodeResult(
                    result(2, bytes(TypeCode.INT64.code, 0), longs(1)),
                    2,
                    Udfs.type("BIGINT"),
                    allocator))
        .isInstanceOf(FrameIO.MalformedFrameException.class)
        .hasMessageContaining("ends early");
    assertThatThrownBy(
            () ->
                ResultDecoder.decodeResult(
                    result(1, bytes(TypeCode.INT32.code, 0), new byte[4]),
                    1,
                    Udfs.type("BIGINT"),
                    allocator))
        .hasMessageContaining("has type code 4, expected 5");
    assertThatThrownBy(
            () ->
                ResultDecoder.decodeResult(
                    result(1, bytes(TypeCode.INT64.code, TypeCode.HAS_NULLS, 0), longs(0)),
                    1,
                    Udfs.type("BIGINT NOT NULL"),
                    allocator))
        .hasMessageContaining("NULLs in the result, declared INT64 NOT NULL");
    assertThatThrownBy(
            () ->
                ResultDecoder.decodeResult(
                    result(2, bytes(TypeCode.STRING.code, 0), longs(0, 3, 1), new byte[3]),
                    2,
                    Udfs.type("VARCHAR"),
                    allocator))
        .hasMessageContaining("offset 2 is 1 after 3");
    assertThatThrownBy(
            () ->
                ResultDecoder.decodeResult(
                    result(1, bytes(TypeCode.INT64.code, 0), longs(1, 2)),
                    1,
                    Udfs.type("BIGINT"),
                    allocator))
        .hasMessageContaining("8 bytes after the result column");
    assertThatThrownBy(
            () ->
                ResultDecoder.decodeResult(
                    result(
                        1,
                        bytes(TypeCode.ARRAY.code, 0),
                        longs(0, 2),
                        bytes(TypeCode.INT32.code, 0)),
                    1,
                    Udfs.type("ARRAY(INT32)"),
                    allocator))
        .hasMessageContaining("ends early");
  }

  @Test
  void separatedValuesAreSplitExactlyAtEverySeparator() {
    java.util.Random random = new java.util.Random(42);
    for (int round = 0; round < 2000; round++) {
      byte sep = (byte) (round % 3 == 0 ? 0 : random.nextInt(128));
      int rows = random.nextInt(40);
      // Values of 0-20 bytes avoiding sep, many of them one bit away from it (sep ^ 1): the near
      // misses of the 8-byte search.
      List<byte[]> values = new java.util.ArrayList<>();
      java.io.ByteArrayOutputStream joined = new java.io.ByteArrayOutputStream();
      int offset = 3; // the data does not start at index 0 of the array
      joined.write(new byte[offset], 0, offset);
      for (int r = 0; r < rows; r++) {
        byte[] v = new byte[random.nextInt(21)];
        for (int k = 0; k < v.length; k++) {
          do {
            v[k] = (byte) (random.nextBoolean() ? sep ^ 1 : random.nextInt(256));
          } while (v[k] == sep);
        }
        values.add(v);
        if (r > 0) {
          joined.write(sep);
        }
        joined.write(v, 0, v.length);
      }
      int extra = rows > 0 && round % 5 == 0 ? 1 : 0; // a separator too many: malformed
      if (extra == 1) {
        joined.write(sep);
        joined.write('x');
      }
      byte[] src = joined.toByteArray();
      // Offsets land after `first` rows of an earlier part, shifted by its `base` bytes.
      int first = round % 3;
      long base = 1000L * round;
      byte[] offsets = new byte[8 * (first + rows + 1)];
      FrameIO.LONG.set(offsets, 8 * first, base);

      int separators =
          ResultDecoder.squeezeSeparated(src, offset, src.length, sep, rows, offsets, first, base);
      long[] o = new long[rows + 1];
      for (int r = 0; r <= rows; r++) {
        o[r] = (long) FrameIO.LONG.get(offsets, 8 * (first + r)) - base;
      }

      if (extra == 1) {
        assertThat(separators).as("round %d", round).isEqualTo(rows);
        continue;
      }
      assertThat(separators).as("round %d", round).isEqualTo(Math.max(rows - 1, 0));
      for (int r = 0; r < rows; r++) {
        byte[] got = Arrays.copyOfRange(src, offset + (int) o[r], offset + (int) o[r + 1]);
        assertThat(got).as("round %d row %d", round, r).isEqualTo(values.get(r));
      }
    }
  }

  @Test
  void framesAreReadWholeOrNotAtAll() throws Exception {
    byte[] twoFrames = {2, 0, 0, 0, 0x11, 'h', 'i', 0, 0, 0, 0, 0x01};
    ByteArrayInputStream in = new ByteArrayInputStream(twoFrames);

    FrameIO.Frame first = FrameIO.readFrame(in);
    assertThat(first.type()).isEqualTo(FrameIO.RESULT);
    assertThat(first.payload()).containsExactly('h', 'i');
    assertThat(FrameIO.readFrame(in).payload()).isEmpty();
    assertThat(FrameIO.readFrame(in)).isNull();

    assertThatThrownBy(
            () -> FrameIO.readFrame(new ByteArrayInputStream(new byte[] {9, 0, 0, 0, 1, 2})))
        .isInstanceOf(EOFException.class);
    assertThatThrownBy(
            () -> FrameIO.readFrame(new ByteArrayInputStream(new byte[] {-1, -1, -1, -1, 1})))
        .isInstanceOf(FrameIO.MalformedFrameException.class);
  }
}
