package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayInputStream;
import java.io.EOFException;
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

  private static ByteBuffer le(byte[] bytes) {
    return ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
  }

  @Test
  void aBatchFrameIsHeaderThenColumns() throws Exception {
    try (FieldVector ints =
            Vectors.of(allocator, "arg1", new ArrowType.Int(32, true), Arrays.asList(7L, null));
        FieldVector flags =
            Vectors.of(allocator, "arg2", ArrowType.Bool.INSTANCE, List.of(true, false))) {
      byte[] frame =
          WireFormat.encodeBatch(
              List.of(ints, flags),
              List.of(Udfs.type("INT"), Udfs.type("BOOLEAN")),
              2,
              Udfs.type("BIGINT NOT NULL"));

      ByteBuffer bb = le(frame);
      assertThat(bb.getInt()).isEqualTo(frame.length - 5);
      assertThat(bb.get()).isEqualTo((byte) WireFormat.BATCH);
      assertThat(bb.getInt()).as("rows").isEqualTo(2);
      assertThat(bb.getShort()).as("argc").isEqualTo((short) 2);
      assertThat(bb.get()).as("result type").isEqualTo((byte) WireFormat.INT64);
      assertThat(bb.get()).as("result flags: not nullable").isZero();
      // INT32 column with a NULL: type, flags, validity, values
      assertThat(bb.get()).isEqualTo((byte) WireFormat.INT32);
      assertThat(bb.get()).isEqualTo((byte) WireFormat.HAS_NULLS);
      assertThat(new byte[] {bb.get(), bb.get()}).containsExactly(1, 0);
      assertThat(bb.getInt()).isEqualTo(7);
      bb.getInt(); // under the NULL: unspecified
      // BOOLEAN column without NULLs: no validity, one byte per value
      assertThat(bb.get()).isEqualTo((byte) WireFormat.BOOLEAN);
      assertThat(bb.get()).isZero();
      assertThat(new byte[] {bb.get(), bb.get()}).containsExactly(1, 0);
      assertThat(bb.hasRemaining()).isFalse();
    }
  }

  @Test
  void stringsOfEveryArrowKindEncodeAlike() throws Exception {
    List<Object> values = Arrays.asList("a", null, "a string longer than twelve", "ü");
    byte[] expected = null;
    for (ArrowType kind :
        List.of(
            ArrowType.Utf8.INSTANCE, ArrowType.LargeUtf8.INSTANCE, ArrowType.Utf8View.INSTANCE)) {
      try (FieldVector v = Vectors.of(allocator, "arg1", kind, values)) {
        byte[] frame =
            WireFormat.encodeBatch(List.of(v), List.of(Udfs.type("VARCHAR")), 4, Udfs.type("INT"));
        if (expected == null) {
          expected = frame;
          ByteBuffer bb = le(frame);
          bb.position(5 + 8);
          assertThat(bb.get()).isEqualTo((byte) WireFormat.STRING);
          assertThat(bb.get()).isEqualTo((byte) WireFormat.HAS_NULLS);
          bb.position(bb.position() + 4);
          long[] offsets = new long[5];
          for (int i = 0; i < 5; i++) {
            offsets[i] = bb.getLong();
          }
          assertThat(offsets).containsExactly(0, 1, 1, 28, 30);
          byte[] data = new byte[bb.remaining()];
          bb.get(data);
          assertThat(new String(data, StandardCharsets.UTF_8))
              .isEqualTo("aa string longer than twelveü");
        } else {
          assertThat(frame).as("%s", kind).isEqualTo(expected);
        }
      }
    }
  }

  private static byte[] result(int rows, int type, int flags, byte[]... parts) {
    int size = 6;
    for (byte[] p : parts) {
      size += p.length;
    }
    ByteBuffer bb = ByteBuffer.allocate(size).order(ByteOrder.LITTLE_ENDIAN);
    bb.putInt(rows).put((byte) type).put((byte) flags);
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

  @Test
  void resultsDecodeIntoTheDeclaredType() throws Exception {
    byte[] payload =
        result(
            3,
            WireFormat.STRING,
            WireFormat.HAS_NULLS,
            new byte[] {1, 0, 1},
            longs(0, 2, 2, 5),
            "hiyou".getBytes(StandardCharsets.UTF_8));

    try (FieldVector v = WireFormat.decodeResult(payload, 3, Udfs.type("VARCHAR"), allocator)) {
      assertThat(v.getField().getName()).isEqualTo("output");
      assertThat(v.getField().getType()).isEqualTo(ArrowType.LargeUtf8.INSTANCE);
      assertThat(Vectors.values(v)).containsExactly("hi", null, "you");
    }
    try (FieldVector v =
        WireFormat.decodeResult(
            result(2, WireFormat.INT64, 0, longs(-1, 5)),
            2,
            Udfs.type("BIGINT NOT NULL"),
            allocator)) {
      assertThat(v.getField().isNullable()).isFalse();
      assertThat(Vectors.values(v)).containsExactly(-1L, 5L);
    }
  }

  @Test
  void malformedResultsAreRejectedWithoutLeaking() {
    assertThatThrownBy(
            () ->
                WireFormat.decodeResult(
                    result(2, WireFormat.INT64, 0, longs(1)), 2, Udfs.type("BIGINT"), allocator))
        .isInstanceOf(WireFormat.MalformedFrameException.class)
        .hasMessageContaining("ends early");
    assertThatThrownBy(
            () ->
                WireFormat.decodeResult(
                    result(1, WireFormat.INT32, 0, new byte[4]), 1, Udfs.type("BIGINT"), allocator))
        .hasMessageContaining("expected 1 rows of type code 5");
    assertThatThrownBy(
            () ->
                WireFormat.decodeResult(
                    result(1, WireFormat.INT64, WireFormat.HAS_NULLS, new byte[] {0}, longs(0)),
                    1,
                    Udfs.type("BIGINT NOT NULL"),
                    allocator))
        .hasMessageContaining("NULLs in a result declared INT64 NOT NULL");
    assertThatThrownBy(
            () ->
                WireFormat.decodeResult(
                    result(2, WireFormat.STRING, 0, longs(0, 3, 1), new byte[3]),
                    2,
                    Udfs.type("VARCHAR"),
                    allocator))
        .hasMessageContaining("offset 2 is 1 after 3");
    assertThatThrownBy(
            () ->
                WireFormat.decodeResult(
                    result(1, WireFormat.INT64, 0, longs(1, 2)), 1, Udfs.type("BIGINT"), allocator))
        .hasMessageContaining("8 bytes after the result column");
  }

  @Test
  void framesAreReadWholeOrNotAtAll() throws Exception {
    byte[] twoFrames = {2, 0, 0, 0, 0x11, 'h', 'i', 0, 0, 0, 0, 0x01};
    ByteArrayInputStream in = new ByteArrayInputStream(twoFrames);

    WireFormat.Frame first = WireFormat.readFrame(in);
    assertThat(first.type()).isEqualTo(WireFormat.RESULT);
    assertThat(first.payload()).containsExactly('h', 'i');
    assertThat(WireFormat.readFrame(in).payload()).isEmpty();
    assertThat(WireFormat.readFrame(in)).isNull();

    assertThatThrownBy(
            () -> WireFormat.readFrame(new ByteArrayInputStream(new byte[] {9, 0, 0, 0, 1, 2})))
        .isInstanceOf(EOFException.class);
    assertThatThrownBy(
            () -> WireFormat.readFrame(new ByteArrayInputStream(new byte[] {-1, -1, -1, -1, 1})))
        .isInstanceOf(WireFormat.MalformedFrameException.class);
  }
}
