package dev.kiln.definition;

import dev.kiln.base.KilnException;
import java.util.List;
import java.util.Objects;

/**
 * A Databend SQL type as it appears in a runtime spec ({@code "INT NULL"}, {@code "TUPLE(1 INT32, 2
 * STRING) NULL"}), parsed into a tree.
 *
 * <p>{@link #toString()} is the canonical spelling (Databend's internal names, explicit
 * nullability), so two spellings of the same type compare and hash equal.
 */
public record DataType(
    Kind kind,
    boolean nullable,
    List<DataType> children,
    List<String> fieldNames,
    int precision,
    int scale,
    int dimension) {

  /** The kind of a type; parameters and children live on {@link DataType}. */
  public enum Kind {
    BOOLEAN,
    INT8,
    INT16,
    INT32,
    INT64,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    FLOAT32,
    FLOAT64,
    DECIMAL,
    DATE,
    TIMESTAMP,
    STRING,
    BINARY,
    VARIANT,
    ARRAY,
    MAP,
    TUPLE,
    VECTOR;

    /** True for kinds with no parameters and no children. */
    public boolean isPrimitive() {
      return switch (this) {
        case DECIMAL, ARRAY, MAP, TUPLE, VECTOR -> false;
        default -> true;
      };
    }
  }

  public DataType {
    Objects.requireNonNull(kind, "kind");
    children = List.copyOf(children);
    fieldNames = List.copyOf(fieldNames);
    if (kind == Kind.TUPLE && fieldNames.size() != children.size()) {
      throw new IllegalArgumentException("tuple needs one field name per child");
    }
  }

  /** A parameterless type. */
  public static DataType of(Kind kind, boolean nullable) {
    if (!kind.isPrimitive()) {
      throw new IllegalArgumentException(kind + " needs parameters");
    }
    return new DataType(kind, nullable, List.of(), List.of(), 0, 0, 0);
  }

  /** Parses a Databend type string; see {@link TypeParser} for the accepted spellings. */
  public static DataType parse(String text) throws KilnException {
    return TypeParser.parse(text);
  }

  /** The same type with the given nullability. */
  public DataType withNullable(boolean newNullable) {
    return new DataType(kind, newNullable, children, fieldNames, precision, scale, dimension);
  }

  /** The canonical spelling without the nullability suffix. */
  public String baseName() {
    StringBuilder sb = new StringBuilder();
    appendBase(sb);
    return sb.toString();
  }

  private void appendBase(StringBuilder sb) {
    switch (kind) {
      case DECIMAL ->
          sb.append("DECIMAL(").append(precision).append(", ").append(scale).append(')');
      case VECTOR -> sb.append("VECTOR(").append(dimension).append(')');
      case ARRAY -> {
        sb.append("ARRAY(");
        children.get(0).appendTo(sb);
        sb.append(')');
      }
      case MAP -> {
        sb.append("MAP(");
        children.get(0).appendTo(sb);
        sb.append(", ");
        children.get(1).appendTo(sb);
        sb.append(')');
      }
      case TUPLE -> {
        sb.append("TUPLE(");
        for (int i = 0; i < children.size(); i++) {
          if (i > 0) {
            sb.append(", ");
          }
          sb.append(fieldNames.get(i)).append(' ');
          children.get(i).appendTo(sb);
        }
        sb.append(')');
      }
      default -> sb.append(kind.name());
    }
  }

  private void appendTo(StringBuilder sb) {
    appendBase(sb);
    sb.append(nullable ? " NULL" : " NOT NULL");
  }

  @Override
  public String toString() {
    StringBuilder sb = new StringBuilder();
    appendTo(sb);
    return sb.toString();
  }
}
