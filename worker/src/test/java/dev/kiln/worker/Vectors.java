package dev.kiln.worker;

import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.BitVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.LargeVarBinaryVector;
import org.apache.arrow.vector.LargeVarCharVector;
import org.apache.arrow.vector.SmallIntVector;
import org.apache.arrow.vector.TinyIntVector;
import org.apache.arrow.vector.UInt1Vector;
import org.apache.arrow.vector.UInt2Vector;
import org.apache.arrow.vector.UInt4Vector;
import org.apache.arrow.vector.UInt8Vector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.ViewVarBinaryVector;
import org.apache.arrow.vector.ViewVarCharVector;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;

/**
 * Builds Arrow vectors from plain Java values and reads them back, normalised: integers as Long
 * (UInt64 as BigInteger), Float32 as Float, Float64 as Double, strings as String, binary as
 * List<Byte> (so equals works), NULL as null.
 */
final class Vectors {

  private Vectors() {}

  static FieldVector of(BufferAllocator allocator, String name, ArrowType type, List<?> values) {
    FieldVector v = new Field(name, FieldType.nullable(type), null).createVector(allocator);
    v.allocateNew();
    for (int i = 0; i < values.size(); i++) {
      Object value = values.get(i);
      if (value == null) {
        v.setNull(i);
        continue;
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
        default -> throw new IllegalArgumentException("no test support for " + type);
      }
    }
    v.setValueCount(values.size());
    return v;
  }

  static List<Object> values(FieldVector v) {
    List<Object> out = new ArrayList<>();
    for (int i = 0; i < v.getValueCount(); i++) {
      out.add(v.isNull(i) ? null : value(v, i));
    }
    return out;
  }

  private static Object value(FieldVector v, int i) {
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
      case LargeVarBinaryVector t -> boxed(t.get(i));
      case ViewVarBinaryVector t -> boxed(t.get(i));
      default -> v.getObject(i);
    };
  }

  static List<Byte> boxed(byte[] bytes) {
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
    @SuppressWarnings("unchecked")
    List<Byte> list = (List<Byte>) value;
    byte[] out = new byte[list.size()];
    for (int i = 0; i < out.length; i++) {
      out[i] = list.get(i);
    }
    return out;
  }
}
