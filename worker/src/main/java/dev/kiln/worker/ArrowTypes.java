package dev.kiln.worker;

import dev.kiln.resolver.DataType;
import java.util.ArrayList;
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
 * Databend types as Arrow sees them: what the endpoint sends (the {@code databend-udf} mapping) and
 * which Arrow types it accepts for each declared argument type (what Databend actually sends, e.g.
 * Utf8View for strings).
 */
public final class ArrowTypes {

  /**
   * Schema metadata key Databend reads to split a GetFlightInfo schema into arguments and result.
   */
  static final String INPUT_COUNT_KEY = "x-databend-udf-input-count";

  static final String RESULT_FIELD = "output";

  private ArrowTypes() {}

  /** The Arrow type Kiln sends for a declared type. */
  public static ArrowType arrowType(DataType type) throws UdfException {
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
      default ->
          throw new UdfException(
              UdfException.Kind.BAD_INPUT,
              "the type " + type + " has no Arrow mapping in Kiln yet; use a primitive type");
    };
  }

  /**
   * The field Databend Query sends for an argument: as {@link #field}, but strings as Utf8View
   * (what Query puts on the wire since it moved to string views).
   */
  public static Field queryArgumentField(String name, DataType type) throws UdfException {
    if (type.kind() == DataType.Kind.STRING) {
      return new Field(name, new FieldType(type.nullable(), ArrowType.Utf8View.INSTANCE, null), null);
    }
    return field(name, type);
  }

  /** A field of a declared type, with its declared nullability. */
  static Field field(String name, DataType type) throws UdfException {
    Map<String, String> metadata =
        type.kind() == DataType.Kind.VARIANT ? Map.of("Extension", "Variant") : null;
    return new Field(name, new FieldType(type.nullable(), arrowType(type), null, metadata), null);
  }

  /** The GetFlightInfo schema Databend expects: {@code arg1..argN} then {@code output}. */
  static Schema signatureSchema(UdfSignature signature) throws UdfException {
    List<Field> fields = new ArrayList<>();
    for (int i = 0; i < signature.inputTypes().size(); i++) {
      fields.add(field("arg" + (i + 1), signature.inputTypes().get(i)));
    }
    fields.add(field(RESULT_FIELD, signature.resultType()));
    return new Schema(
        fields, Map.of(INPUT_COUNT_KEY, Integer.toString(signature.inputTypes().size())));
  }

  /** Whether an argument declared as {@code declared} may arrive as {@code actual}. */
  static boolean accepts(DataType declared, ArrowType actual) {
    return switch (declared.kind()) {
      case STRING ->
          actual instanceof ArrowType.Utf8
              || actual instanceof ArrowType.LargeUtf8
              || actual instanceof ArrowType.Utf8View;
      case BINARY ->
          actual instanceof ArrowType.Binary
              || actual instanceof ArrowType.LargeBinary
              || actual instanceof ArrowType.BinaryView;
      case TIMESTAMP ->
          actual instanceof ArrowType.Timestamp ts
              && ts.getUnit() == TimeUnit.MICROSECOND
              && ts.getTimezone() == null;
      default -> {
        try {
          yield arrowType(declared).equals(actual);
        } catch (UdfException e) {
          yield false;
        }
      }
    };
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
    return type.toString();
  }
}
