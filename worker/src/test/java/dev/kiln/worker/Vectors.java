package dev.kiln.worker;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BaseVariableWidthVector;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.BitVector;
import org.apache.arrow.vector.DateDayVector;
import org.apache.arrow.vector.Decimal256Vector;
import org.apache.arrow.vector.DecimalVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.FixedSizeBinaryVector;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.LargeVarBinaryVector;
import org.apache.arrow.vector.LargeVarCharVector;
import org.apache.arrow.vector.SmallIntVector;
import org.apache.arrow.vector.TimeStampVector;
import org.apache.arrow.vector.TinyIntVector;
import org.apache.arrow.vector.UInt1Vector;
import org.apache.arrow.vector.UInt2Vector;
import org.apache.arrow.vector.UInt4Vector;
import org.apache.arrow.vector.UInt8Vector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.ViewVarBinaryVector;
import org.apache.arrow.vector.ViewVarCharVector;
import org.apache.arrow.vector.complex.FixedSizeListVector;
import org.apache.arrow.vector.complex.LargeListVector;
import org.apache.arrow.vector.complex.ListVector;
import org.apache.arrow.vector.complex.MapVector;
import org.apache.arrow.vector.complex.StructVector;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;

/**
 * Builds Arrow vectors from plain Java values and reads them back, normalised: integers as Long
 * (UInt64 as BigInteger), Float32 as Float, Float64 as Double, strings as String, binary as
 * List<Byte> (so equals works), DECIMAL as BigDecimal, DATE as LocalDate, TIMESTAMP as
 * LocalDateTime (µs), ARRAY and VECTOR as List, MAP as a LinkedHashMap, TUPLE as a List of its
 * fields, NULL as null. Nested vectors are written value by value, which is slow but obviously
 * right.
 */
public final class Vectors {

  private Vectors() {}

  /** A nullable vector of a leaf type. */
  public static FieldVector of(
      BufferAllocator allocator, String name, ArrowType type, List<?> values) {
    return of(allocator, new Field(name, FieldType.nullable(type), null), values);
  }

  /** A vector of any field, nested included. */
  public static FieldVector of(BufferAllocator allocator, Field field, List<?> values) {
    FieldVector v = field.createVector(allocator);
    try {
      v.allocateNew();
      for (int i = 0; i < values.size(); i++) {
        set(v, i, values.get(i));
      }
      v.setValueCount(values.size());
      return v;
    } catch (RuntimeException e) {
      v.close();
      throw e;
    }
  }

  @SuppressWarnings("unchecked")
  private static void set(FieldVector v, int i, Object value) {
    if (value == null) {
      if (v instanceof BaseVariableWidthVector b) {
        b.fillEmpties(i);
      }
      v.setNull(i);
      return;
    }
    switch (v) {
      case BitVector b -> b.setSafe(i, (Boolean) value ? 1 : 0);
      case TinyIntVector t -> t.setSafe(i, ((Number) value).byteValue());
      case SmallIntVector t -> t.setSafe(i, ((Number) value).shortValue());
      case IntVector t -> t.setSafe(i, ((Number) value).intValue());
      case BigIntVector t -> t.setSafe(i, ((Number) value).longValue());
      case UInt1Vector t -> t.setSafe(i, ((Number) value).intValue());
      case UInt2Vector t -> t.setSafe(i, ((Number) value).intValue());
      case UInt4Vector t -> t.setSafe(i, ((Number) value).intValue());
      case UInt8Vector t -> t.setSafe(i, ((Number) value).longValue());
      case Float4Vector t -> t.setSafe(i, ((Number) value).floatValue());
      case Float8Vector t -> t.setSafe(i, ((Number) value).doubleValue());
      case VarCharVector t -> t.setSafe(i, utf8(value));
      case LargeVarCharVector t -> t.setSafe(i, utf8(value));
      case ViewVarCharVector t -> t.setSafe(i, utf8(value));
      case VarBinaryVector t -> t.setSafe(i, bytes(value));
      case LargeVarBinaryVector t -> t.setSafe(i, bytes(value));
      case ViewVarBinaryVector t -> t.setSafe(i, bytes(value));
      case DecimalVector t -> t.setSafe(i, (BigDecimal) value);
      case Decimal256Vector t -> t.setSafe(i, (BigDecimal) value);
      case FixedSizeBinaryVector t -> t.setSafe(i, bytes(value));
      case DateDayVector t -> t.setSafe(i, (int) ((LocalDate) value).toEpochDay());
      case TimeStampVector t ->
          t.setSafe(i, timestamp((ArrowType.Timestamp) t.getField().getType(), value));
      case MapVector m -> {
        Map<Object, Object> map = (Map<Object, Object>) value;
        long at = m.startNewValue(i);
        StructVector entries = (StructVector) m.getDataVector();
        int j = (int) at;
        for (Map.Entry<Object, Object> e : map.entrySet()) {
          entries.setIndexDefined(j);
          set(entries.getChildrenFromFields().get(0), j, e.getKey());
          set(entries.getChildrenFromFields().get(1), j, e.getValue());
          j++;
        }
        m.endValue(i, map.size());
      }
      case ListVector l -> {
        List<Object> items = (List<Object>) value;
        int at = l.startNewValue(i);
        for (int k = 0; k < items.size(); k++) {
          set(l.getDataVector(), at + k, items.get(k));
        }
        l.endValue(i, items.size());
      }
      case LargeListVector l -> {
        List<Object> items = (List<Object>) value;
        long at = l.startNewValue(i);
        for (int k = 0; k < items.size(); k++) {
          set(l.getDataVector(), (int) at + k, items.get(k));
        }
        l.endValue(i, items.size());
      }
      case FixedSizeListVector l -> {
        List<Object> items = (List<Object>) value;
        l.setNotNull(i);
        for (int k = 0; k < items.size(); k++) {
          set(l.getDataVector(), i * l.getListSize() + k, items.get(k));
        }
      }
      case StructVector s -> {
        List<Object> fields = (List<Object>) value;
        s.setIndexDefined(i);
        for (int k = 0; k < fields.size(); k++) {
          set(s.getChildrenFromFields().get(k), i, fields.get(k));
        }
      }
      default -> throw new IllegalArgumentException("no test support for " + v.getField());
    }
  }

  private static long timestamp(ArrowType.Timestamp type, Object value) {
    if (value instanceof Long l) {
      return l;
    }
    LocalDateTime t = (LocalDateTime) value;
    long micros = ChronoUnit.MICROS.between(LocalDateTime.of(1970, 1, 1, 0, 0), t);
    return switch (type.getUnit()) {
      case SECOND -> Math.floorDiv(micros, 1_000_000L);
      case MILLISECOND -> Math.floorDiv(micros, 1_000L);
      case MICROSECOND -> micros;
      case NANOSECOND -> micros * 1_000L;
    };
  }

  public static List<Object> values(FieldVector v) {
    List<Object> out = new ArrayList<>();
    for (int i = 0; i < v.getValueCount(); i++) {
      out.add(value(v, i));
    }
    return out;
  }

  public static Object value(FieldVector v, int i) {
    if (v.isNull(i)) {
      return null;
    }
    return switch (v) {
      case BitVector b -> b.get(i) == 1;
      case TinyIntVector t -> (long) t.get(i);
      case SmallIntVector t -> (long) t.get(i);
      case IntVector t -> (long) t.get(i);
      case BigIntVector t -> t.get(i);
      case UInt1Vector t -> (long) Byte.toUnsignedInt(t.get(i));
      case UInt2Vector t -> (long) t.get(i);
      case UInt4Vector t -> Integer.toUnsignedLong(t.get(i));
      case UInt8Vector t -> new BigInteger(Long.toUnsignedString(t.get(i)));
      case Float4Vector t -> t.get(i);
      case Float8Vector t -> t.get(i);
      case VarCharVector t -> new String(t.get(i), StandardCharsets.UTF_8);
      case LargeVarCharVector t -> new String(t.get(i), StandardCharsets.UTF_8);
      case ViewVarCharVector t -> new String(t.get(i), StandardCharsets.UTF_8);
      case VarBinaryVector t -> boxed(t.get(i));
      case LargeVarBinaryVector t ->
          isVariant(t.getField()) ? new String(t.get(i), StandardCharsets.UTF_8) : boxed(t.get(i));
      case ViewVarBinaryVector t -> boxed(t.get(i));
      case DecimalVector t -> t.getObject(i);
      case Decimal256Vector t -> t.getObject(i);
      case DateDayVector t -> LocalDate.ofEpochDay(t.get(i));
      case TimeStampVector t -> {
        long raw = t.get(i);
        TimeUnit unit = ((ArrowType.Timestamp) t.getField().getType()).getUnit();
        long micros =
            switch (unit) {
              case SECOND -> raw * 1_000_000L;
              case MILLISECOND -> raw * 1_000L;
              case MICROSECOND -> raw;
              case NANOSECOND -> Math.floorDiv(raw, 1_000L);
            };
        yield LocalDateTime.ofEpochSecond(
            Math.floorDiv(micros, 1_000_000L),
            (int) Math.floorMod(micros, 1_000_000L) * 1000,
            ZoneOffset.UTC);
      }
      case MapVector m -> {
        Map<Object, Object> map = new LinkedHashMap<>();
        StructVector entries = (StructVector) m.getDataVector();
        int from = m.getOffsetBuffer().getInt(4L * i);
        int to = m.getOffsetBuffer().getInt(4L * (i + 1));
        for (int j = from; j < to; j++) {
          map.put(
              value(entries.getChildrenFromFields().get(0), j),
              value(entries.getChildrenFromFields().get(1), j));
        }
        yield map;
      }
      case ListVector l -> {
        List<Object> items = new ArrayList<>();
        int from = l.getOffsetBuffer().getInt(4L * i);
        int to = l.getOffsetBuffer().getInt(4L * (i + 1));
        for (int j = from; j < to; j++) {
          items.add(value(l.getDataVector(), j));
        }
        yield items;
      }
      case LargeListVector l -> {
        List<Object> items = new ArrayList<>();
        long from = l.getOffsetBuffer().getLong(8L * i);
        long to = l.getOffsetBuffer().getLong(8L * (i + 1));
        for (long j = from; j < to; j++) {
          items.add(value(l.getDataVector(), (int) j));
        }
        yield items;
      }
      case FixedSizeListVector l -> {
        List<Object> items = new ArrayList<>();
        for (int k = 0; k < l.getListSize(); k++) {
          items.add(value(l.getDataVector(), i * l.getListSize() + k));
        }
        yield items;
      }
      case StructVector s -> {
        List<Object> fields = new ArrayList<>();
        for (FieldVector child : s.getChildrenFromFields()) {
          fields.add(value(child, i));
        }
        yield fields;
      }
      default -> v.getObject(i);
    };
  }

  private static boolean isVariant(Field field) {
    return ArrowTypes.VARIANT_EXTENSION.equals(field.getMetadata().get(ArrowTypes.EXTENSION_KEY));
  }

  public static List<Byte> boxed(byte[] bytes) {
    List<Byte> out = new ArrayList<>(bytes.length);
    for (byte b : bytes) {
      out.add(b);
    }
    return out;
  }

  private static byte[] utf8(Object value) {
    return value.toString().getBytes(StandardCharsets.UTF_8);
  }

  private static byte[] bytes(Object value) {
    if (value instanceof byte[] b) {
      return b;
    }
    if (value instanceof String s) {
      return s.getBytes(StandardCharsets.UTF_8);
    }
    @SuppressWarnings("unchecked")
    List<Byte> list = (List<Byte>) value;
    byte[] out = new byte[list.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = list.get(i);
    }
    return out;
  }
}
