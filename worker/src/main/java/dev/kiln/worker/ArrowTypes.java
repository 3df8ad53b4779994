package dev.kiln.worker;

import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.apache.arrow.vector.types.DateUnit;
import org.apache.arrow.vector.types.FloatingPointPrecision;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

/**
 * Databend types as Arrow sees them: what the endpoint sends (results and GetFlightInfo, in the
 * shape Databend Query itself uses), and which Arrow fields it accepts for each declared argument
 * type (every list, string, binary and timestamp kind Query may send, Decimal64 included).
 */
public final class ArrowTypes {

  /**
   * Schema metadata key Databend reads to split a GetFlightInfo schema into arguments and result.
   */
  static final String INPUT_COUNT_KEY = "x-databend-udf-input-count";

  static final String RESULT_FIELD = "output";

  /** Field metadata key Databend uses to mark VARIANT and VECTOR columns. */
  static final String EXTENSION_KEY = "Extension";

  static final String VARIANT_EXTENSION = "Variant";
  static final String VECTOR_EXTENSION = "Vector";

  /** Item field of an ARRAY, as Query names it. */
  static final String ARRAY_ITEM = "_array";

  /**
   * Metadata the endpoint puts on a Decimal64 field ({@link Decimal64Schemas}) after turning it
   * into FixedSizeBinary(8), which Arrow Java can read: {@code "precision,scale"}.
   */
  static final String DECIMAL64_KEY = "kiln.decimal64";

  private ArrowTypes() {}

  /** The Arrow type Kiln sends for a declared type (nested types: without their children). */
  public static ArrowType arrowType(DataType type) throws KilnException {
    return switch (type.kind()) {
      case BOOLEAN -> ArrowType.Bool.INSTANCE;
      case INT8 -> new ArrowType.Int(8, true);
      case INT16 -> new ArrowType.Int(16, true);
      case INT32 -> new ArrowType.Int(32, true);
      case INT64 -> new ArrowType.Int(64, true);
      case UINT8 -> new ArrowType.Int(8, false);
      case UINT16 -> new ArrowType.Int(16, false);
      case UINT32 -> new ArrowType.Int(32, false);
      case UINT64 -> new ArrowType.Int(64, false);
      case FLOAT32 -> new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE);
      case FLOAT64 -> new ArrowType.FloatingPoint(FloatingPointPrecision.DOUBLE);
      case STRING -> ArrowType.LargeUtf8.INSTANCE;
      case BINARY, VARIANT -> ArrowType.LargeBinary.INSTANCE;
      case DATE -> new ArrowType.Date(DateUnit.DAY);
      case TIMESTAMP -> new ArrowType.Timestamp(TimeUnit.MICROSECOND, null);
      case DECIMAL ->
          new ArrowType.Decimal(type.precision(), type.scale(), type.precision() > 38 ? 256 : 128);
      case ARRAY -> ArrowType.LargeList.INSTANCE;
      case MAP -> new ArrowType.Map(false);
      case TUPLE -> ArrowType.Struct.INSTANCE;
      case VECTOR -> new ArrowType.FixedSizeList(type.dimension());
    };
  }

  /**
   * The field Databend Query sends for an argument: as {@link #field}, but strings as Utf8View and
   * MAP entries named {@code 1} and {@code 2} (also inside nested types). DECIMAL(p ≤ 18) is
   * Decimal128 here: Query sends Decimal64 since late 2025, which Arrow Java cannot write (the
   * endpoint reads both).
   */
  public static Field queryArgumentField(String name, DataType type) throws KilnException {
    return build(name, type, true);
  }

  /** A field of a declared type, with its declared nullability, nested fields included. */
  static Field field(String name, DataType type) throws KilnException {
    return build(name, type, false);
  }

  private static Field build(String name, DataType type, boolean asQuery) throws KilnException {
    Map<String, String> metadata = null;
    ArrowType arrow = arrowType(type);
    List<Field> children = new ArrayList<>();
    switch (type.kind()) {
      case STRING -> {
        if (asQuery) {
          arrow = ArrowType.Utf8View.INSTANCE;
        }
      }
      case VARIANT -> metadata = Map.of(EXTENSION_KEY, VARIANT_EXTENSION);
      case VECTOR -> {
        metadata =
            Map.of(
                EXTENSION_KEY, VECTOR_EXTENSION, "vector_size", Integer.toString(type.dimension()));
        children.add(
            new Field(
                "item",
                FieldType.notNullable(new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE)),
                null));
      }
      case ARRAY -> children.add(build(ARRAY_ITEM, type.children().get(0), asQuery));
      case MAP -> {
        // Query names the entries' fields after its internal tuple ("1", "2"); Arrow says
        // key/value.
        Field key =
            build(asQuery ? "1" : "key", type.children().get(0).withNullable(false), asQuery);
        Field value = build(asQuery ? "2" : "value", type.children().get(1), asQuery);
        children.add(
            new Field(
                "entries", FieldType.notNullable(ArrowType.Struct.INSTANCE), List.of(key, value)));
      }
      case TUPLE -> {
        for (int i = 0; i < type.children().size(); i++) {
          children.add(build(type.fieldNames().get(i), type.children().get(i), asQuery));
        }
      }
      default -> {}
    }
    return new Field(name, new FieldType(type.nullable(), arrow, null, metadata), children);
  }

  /** The GetFlightInfo schema Databend expects: {@code arg1..argN} then {@code output}. */
  static Schema signatureSchema(UdfSignature signature) throws KilnException {
    List<Field> fields = new ArrayList<>();
    for (int i = 0; i < signature.inputTypes().size(); i++) {
      fields.add(field("arg" + (i + 1), signature.inputTypes().get(i)));
    }
    fields.add(field(RESULT_FIELD, signature.resultType()));
    return new Schema(
        fields, Map.of(INPUT_COUNT_KEY, Integer.toString(signature.inputTypes().size())));
  }

  /**
   * Whether an argument declared as {@code declared} may arrive as {@code actual}: any string kind
   * for strings, any binary kind for BINARY and VARIANT, any timestamp unit, any decimal width of
   * the declared scale (Decimal64 included), List or LargeList for ARRAY; nested types recursively.
   * Nullability is not checked: the runner hands NULLs to the function as {@code None} either way.
   */
  static boolean accepts(DataType declared, Field actual) {
    ArrowType t = actual.getType();
    List<Field> children = actual.getChildren();
    return switch (declared.kind()) {
      case STRING ->
          t instanceof ArrowType.Utf8
              || t instanceof ArrowType.LargeUtf8
              || t instanceof ArrowType.Utf8View;
      case BINARY -> isBinary(t);
      case VARIANT ->
          isBinary(t)
              || t instanceof ArrowType.Utf8
              || t instanceof ArrowType.LargeUtf8
              || t instanceof ArrowType.Utf8View;
      case TIMESTAMP -> t instanceof ArrowType.Timestamp;
      case DECIMAL -> {
        if (t instanceof ArrowType.Decimal d) {
          yield d.getScale() == declared.scale()
              && (d.getBitWidth() == 128 || d.getBitWidth() == 256);
        }
        int[] ps = decimal64(actual);
        yield ps != null && ps[1] == declared.scale();
      }
      case ARRAY ->
          (t instanceof ArrowType.List || t instanceof ArrowType.LargeList)
              && children.size() == 1
              && accepts(declared.children().get(0), children.get(0));
      case MAP -> {
        if (!(t instanceof ArrowType.Map) || children.size() != 1) {
          yield false;
        }
        List<Field> entries = children.get(0).getChildren();
        yield entries.size() == 2
            && accepts(declared.children().get(0), entries.get(0))
            && accepts(declared.children().get(1), entries.get(1));
      }
      case TUPLE -> {
        if (!(t instanceof ArrowType.Struct) || children.size() != declared.children().size()) {
          yield false;
        }
        for (int i = 0; i < children.size(); i++) {
          if (!accepts(declared.children().get(i), children.get(i))) {
            yield false;
          }
        }
        yield true;
      }
      case VECTOR ->
          t instanceof ArrowType.FixedSizeList f
              && f.getListSize() == declared.dimension()
              && children.size() == 1
              && children
                  .get(0)
                  .getType()
                  .equals(new ArrowType.FloatingPoint(FloatingPointPrecision.SINGLE));
      default -> {
        try {
          yield arrowType(declared).equals(t);
        } catch (KilnException e) {
          yield false;
        }
      }
    };
  }

  private static boolean isBinary(ArrowType t) {
    return t instanceof ArrowType.Binary
        || t instanceof ArrowType.LargeBinary
        || t instanceof ArrowType.BinaryView;
  }

  /** {precision, scale} of a Decimal64 field the endpoint rewrote, or null for any other field. */
  static int[] decimal64(Field field) {
    if (!(field.getType() instanceof ArrowType.FixedSizeBinary b) || b.getByteWidth() != 8) {
      return null;
    }
    String ps = field.getMetadata().get(DECIMAL64_KEY);
    if (ps == null) {
      return null;
    }
    int comma = ps.indexOf(',');
    return new int[] {
      Integer.parseInt(ps.substring(0, comma)), Integer.parseInt(ps.substring(comma + 1))
    };
  }

  /** Field metadata for a Decimal64 field rewritten to FixedSizeBinary(8). */
  static Map<String, String> decimal64Metadata(
      Map<String, String> original, int precision, int scale) {
    Map<String, String> metadata = new HashMap<>(original == null ? Map.of() : original);
    metadata.put(DECIMAL64_KEY, precision + "," + scale);
    return metadata;
  }

  /**
   * A short Arrow type for error messages, e.g. {@code Int64}, {@code Utf8View} or {@code
   * LargeList<Int32>}.
   */
  static String describe(Field field) {
    int[] d64 = decimal64(field);
    if (d64 != null) {
      return "Decimal64(" + d64[0] + ", " + d64[1] + ")";
    }
    String base = describe(field.getType());
    if (field.getChildren().isEmpty()) {
      return base;
    }
    StringBuilder sb = new StringBuilder(base).append('<');
    List<Field> children = field.getChildren();
    if (field.getType() instanceof ArrowType.Map && children.size() == 1) {
      children = children.get(0).getChildren();
    }
    for (int i = 0; i < children.size(); i++) {
      if (i > 0) {
        sb.append(", ");
      }
      sb.append(describe(children.get(i)));
    }
    return sb.append('>').toString();
  }

  /** A short Arrow type name for error messages, e.g. {@code Int64} or {@code Utf8View}. */
  static String describe(ArrowType type) {
    if (type instanceof ArrowType.Int i) {
      return (i.getIsSigned() ? "Int" : "UInt") + i.getBitWidth();
    }
    if (type instanceof ArrowType.FloatingPoint f) {
      return switch (f.getPrecision()) {
        case HALF -> "Float16";
        case SINGLE -> "Float32";
        case DOUBLE -> "Float64";
      };
    }
    if (type instanceof ArrowType.Decimal d) {
      return "Decimal" + d.getBitWidth() + "(" + d.getPrecision() + ", " + d.getScale() + ")";
    }
    if (type instanceof ArrowType.LargeList) {
      return "LargeList";
    }
    if (type instanceof ArrowType.List) {
      return "List";
    }
    if (type instanceof ArrowType.Struct) {
      return "Struct";
    }
    if (type instanceof ArrowType.Map) {
      return "Map";
    }
    return type.toString();
  }
}
