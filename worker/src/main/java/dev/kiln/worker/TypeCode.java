package dev.kiln.worker;

import dev.kiln.definition.DataType;

/**
 * The runner wire's type codes: the first byte of a type descriptor and of a column (PROTOCOL.md,
 * "Type descriptors" and "Columns"), and the one table of them on the Java side, which the batch
 * encoder and the result decoder both use. The Python runner's table is in {@code
 * runner/kiln_wire.py}; {@code TypeCodeTest} checks that the two agree, name for name.
 *
 * <p>The names are those of {@link DataType.Kind}. A column's code is followed by a flags byte,
 * whose bits are here too.
 */
enum TypeCode {
  BOOLEAN(1, 1),
  INT8(2, 1),
  INT16(3, 2),
  INT32(4, 4),
  INT64(5, 8),
  UINT8(6, 1),
  UINT16(7, 2),
  UINT32(8, 4),
  UINT64(9, 8),
  FLOAT32(10, 4),
  FLOAT64(11, 8),
  STRING(12, 0),
  BINARY(13, 0),
  DATE(14, 4),
  TIMESTAMP(15, 8),
  DECIMAL(16, 0),
  VARIANT(17, 0),
  ARRAY(18, 0),
  MAP(19, 0),
  TUPLE(20, 0),
  VECTOR(21, 0);

  /** Column flag: validity bytes follow the column header. */
  static final int HAS_NULLS = 0x01;

  /**
   * STRING, BINARY, VARIANT column flag: the values are joined by a separator byte that occurs in
   * none of them ({@code sep:u8 length:u64 bytes}) instead of offsets then bytes; Python splits
   * them at C speed instead of slicing each one.
   */
  static final int SEPARATED = 0x02;

  /** The byte on the wire. */
  final int code;

  /** Bytes per value of a fixed-width type (DECIMAL: see the column), or 0. */
  final int width;

  TypeCode(int code, int width) {
    this.code = code;
    this.width = width;
  }

  /** The wire type code of a declared type. */
  static TypeCode of(DataType type) {
    return switch (type.kind()) {
      case BOOLEAN -> BOOLEAN;
      case INT8 -> INT8;
      case INT16 -> INT16;
      case INT32 -> INT32;
      case INT64 -> INT64;
      case UINT8 -> UINT8;
      case UINT16 -> UINT16;
      case UINT32 -> UINT32;
      case UINT64 -> UINT64;
      case FLOAT32 -> FLOAT32;
      case FLOAT64 -> FLOAT64;
      case STRING -> STRING;
      case BINARY -> BINARY;
      case DATE -> DATE;
      case TIMESTAMP -> TIMESTAMP;
      case DECIMAL -> DECIMAL;
      case VARIANT -> VARIANT;
      case ARRAY -> ARRAY;
      case MAP -> MAP;
      case TUPLE -> TUPLE;
      case VECTOR -> VECTOR;
    };
  }

  /** Wire width of a DECIMAL result of this precision: the Arrow type the worker builds. */
  static int decimalResultWidth(DataType type) {
    return type.precision() > 38 ? 32 : 16;
  }
}
