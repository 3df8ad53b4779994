package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import dev.kiln.worker.ArrowTypes;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.BitVector;
import org.apache.arrow.vector.DateDayVector;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.Float4Vector;
import org.apache.arrow.vector.Float8Vector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.LargeVarBinaryVector;
import org.apache.arrow.vector.SmallIntVector;
import org.apache.arrow.vector.TimeStampMicroVector;
import org.apache.arrow.vector.TinyIntVector;
import org.apache.arrow.vector.UInt1Vector;
import org.apache.arrow.vector.UInt2Vector;
import org.apache.arrow.vector.UInt4Vector;
import org.apache.arrow.vector.UInt8Vector;
import org.apache.arrow.vector.ValueVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.ViewVarCharVector;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Converts rows written as JSON ({@code [[1,"a"],[2,null]]}) to an Arrow batch shaped the way
 * Databend Query sends it (fields {@code arg1..argN}, strings as Utf8View), and result columns back
 * to JSON. Used by {@code kiln call}; covers Databend's primitive types.
 */
final class ArrowRows {
  private static final ObjectMapper JSON = new ObjectMapper();

  private ArrowRows() {}

  /** The Arrow field Databend Query sends for an argument of this type. */
  static Field inputField(String name, DataType type) {
    try {
      return ArrowTypes.queryArgumentField(name, type);
    } catch (KilnException e) {
      throw new IllegalArgumentException(e.getMessage());
    }
  }

  /** Builds a batch from JSON rows; the caller closes it. */
  static VectorSchemaRoot toBatch(List<DataType> types, JsonNode rows, BufferAllocator allocator) {
    if (!rows.isArray()) {
      throw new IllegalArgumentException("--rows must be a JSON array of rows, e.g. [[1],[2]]");
    }
    List<Field> fields = new ArrayList<>();
    for (int i = 0; i < types.size(); i++) {
      fields.add(inputField("arg" + (i + 1), types.get(i)));
    }
    VectorSchemaRoot root = VectorSchemaRoot.create(new Schema(fields), allocator);
    try {
      for (FieldVector v : root.getFieldVectors()) {
        v.allocateNew();
      }
      for (int r = 0; r < rows.size(); r++) {
        JsonNode row = rows.get(r);
        if (!row.isArray() || row.size() != types.size()) {
          throw new IllegalArgumentException(
              "row " + r + " must be a JSON array of " + types.size() + " values, got " + row);
        }
        for (int c = 0; c < types.size(); c++) {
          set(root.getVector(c), types.get(c), r, row.get(c));
        }
      }
      root.setRowCount(rows.size());
      return root;
    } catch (RuntimeException e) {
      root.close();
      throw e;
    }
  }

  private static void set(FieldVector v, DataType type, int i, JsonNode value) {
    if (value == null || value.isNull()) {
      if (!type.nullable()) {
        throw new IllegalArgumentException(
            "row " + i + ": NULL given for " + type + " argument " + v.getName());
      }
      v.setNull(i);
      return;
    }
    switch (v) {
      case BitVector b -> b.setSafe(i, value.asBoolean() ? 1 : 0);
      case TinyIntVector t -> t.setSafe(i, (byte) value.asInt());
      case SmallIntVector s -> s.setSafe(i, (short) value.asInt());
      case IntVector n -> n.setSafe(i, value.asInt());
      case BigIntVector n -> n.setSafe(i, value.asLong());
      case UInt1Vector u -> u.setSafe(i, value.asInt());
      case UInt2Vector u -> u.setSafe(i, (char) value.asInt());
      case UInt4Vector u -> u.setSafe(i, (int) value.asLong());
      case UInt8Vector u -> u.setSafe(i, value.bigIntegerValue().longValue());
      case Float4Vector f -> f.setSafe(i, (float) value.asDouble());
      case Float8Vector f -> f.setSafe(i, value.asDouble());
      case ViewVarCharVector s -> s.setSafe(i, value.asText().getBytes(StandardCharsets.UTF_8));
      case LargeVarBinaryVector b -> b.setSafe(i, Base64.getDecoder().decode(value.asText()));
      case DateDayVector d -> d.setSafe(i, (int) LocalDate.parse(value.asText()).toEpochDay());
      case TimeStampMicroVector t ->
          t.setSafe(
              i,
              ChronoUnit.MICROS.between(
                  LocalDateTime.ofEpochSecond(0, 0, ZoneOffset.UTC),
                  LocalDateTime.parse(value.asText())));
      default -> throw new IllegalArgumentException("cannot encode " + type);
    }
  }

  /** Appends each value of the column as one JSON row {@code [value]}. */
  static void appendRows(ValueVector column, ArrayNode out) {
    for (int i = 0; i < column.getValueCount(); i++) {
      ArrayNode row = out.addArray();
      if (column.isNull(i)) {
        row.addNull();
        continue;
      }
      Object o = column.getObject(i);
      switch (o) {
        case Boolean b -> row.add(b);
        case Byte b -> row.add(b.intValue());
        case Short s -> row.add(s.intValue());
        case Integer n -> {
          if (column instanceof DateDayVector) {
            row.add(LocalDate.ofEpochDay(n).toString());
          } else {
            row.add(n);
          }
        }
        case Long n ->
            row.add(
                column instanceof UInt8Vector && n < 0
                    ? JSON.getNodeFactory()
                        .numberNode(BigInteger.valueOf(n).add(BigInteger.ONE.shiftLeft(64)))
                    : JSON.getNodeFactory().numberNode(n));
        case Character c -> row.add((int) c);
        case Float f -> row.add(f);
        case Double d -> row.add(d);
        case byte[] bytes -> row.add(Base64.getEncoder().encodeToString(bytes));
        case LocalDateTime t -> row.add(t.toString());
        default -> row.add(o.toString());
      }
    }
  }

  static JsonNode parse(String text) {
    try {
      return JSON.readTree(text);
    } catch (java.io.IOException e) {
      throw new IllegalArgumentException("--rows is not valid JSON: " + e.getMessage());
    }
  }
}
