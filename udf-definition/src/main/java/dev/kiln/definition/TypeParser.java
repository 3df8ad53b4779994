package dev.kiln.definition;

import static dev.kiln.definition.SpecErrors.invalid;

import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType.Kind;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * Parses Databend type strings: the names {@code databend-udf} accepts ({@code INT}, {@code
 * VARCHAR}, {@code BIGINT UNSIGNED}, …) and Databend's internal names that Query really sends
 * ({@code INT32}, {@code STRING}, {@code TUPLE(1 INT32, 2 STRING)}).
 *
 * <p>Nullability: a trailing {@code NULL} makes a type nullable, {@code NOT NULL} makes it not
 * null. A bare top-level type is nullable (as in {@code databend-udf}); a bare type nested inside
 * {@code ARRAY}, {@code MAP} or {@code TUPLE} is not null (as in Databend's internal names, where
 * {@code ARRAY(INT32)} has non-null items).
 */
final class TypeParser {
  private final String text;
  private final List<String> tokens;
  private int pos;

  private TypeParser(String text, List<String> tokens) {
    this.text = text;
    this.tokens = tokens;
  }

  static DataType parse(String text) throws KilnException {
    if (text == null || text.isBlank()) {
      throw invalid("type string is empty; expected a Databend type such as 'INT NULL'");
    }
    TypeParser parser = new TypeParser(text, tokenize(text));
    DataType type = parser.type(false);
    if (parser.pos != parser.tokens.size()) {
      throw parser.error("unexpected '" + parser.tokens.get(parser.pos) + "'");
    }
    return type;
  }

  private static List<String> tokenize(String text) throws KilnException {
    List<String> out = new ArrayList<>();
    int i = 0;
    while (i < text.length()) {
      char c = text.charAt(i);
      if (Character.isWhitespace(c)) {
        i++;
      } else if (c == '(' || c == ')' || c == ',') {
        out.add(String.valueOf(c));
        i++;
      } else if (Character.isLetterOrDigit(c) || c == '_' || c == '"' || c == '`') {
        int start = i;
        if (c == '"' || c == '`') {
          int end = text.indexOf(c, i + 1);
          if (end < 0) {
            throw invalid("unterminated quoted name in type '" + text + "'");
          }
          out.add(text.substring(i + 1, end));
          i = end + 1;
          continue;
        }
        while (i < text.length()
            && (Character.isLetterOrDigit(text.charAt(i)) || text.charAt(i) == '_')) {
          i++;
        }
        out.add(text.substring(start, i));
      } else {
        throw invalid("unexpected character '" + c + "' in type '" + text + "'");
      }
    }
    return out;
  }

  private KilnException error(String what) {
    return invalid(
        "unknown type '"
            + text
            + "': "
            + what
            + "; expected a Databend type such as INT, BIGINT UNSIGNED, DOUBLE, VARCHAR,"
            + " BOOLEAN, DATE, TIMESTAMP, DECIMAL(p, s), BINARY, VARIANT, ARRAY(T), MAP(K, V),"
            + " TUPLE(T, ...) or VECTOR(N), optionally followed by NULL or NOT NULL");
  }

  private String peek() {
    return pos < tokens.size() ? tokens.get(pos) : null;
  }

  private String peekUpper() {
    String t = peek();
    return t == null ? null : t.toUpperCase(Locale.ROOT);
  }

  private String next() throws KilnException {
    if (pos >= tokens.size()) {
      throw error("it ends too early");
    }
    return tokens.get(pos++);
  }

  private void expect(String token) throws KilnException {
    String t = next();
    if (!t.equals(token)) {
      throw error("expected '" + token + "' but found '" + t + "'");
    }
  }

  private int number() throws KilnException {
    String t = next();
    try {
      return Integer.parseInt(t);
    } catch (NumberFormatException e) {
      throw error("expected a number but found '" + t + "'");
    }
  }

  private DataType type(boolean nested) throws KilnException {
    DataType base = base();
    String suffix = peekUpper();
    if ("NULL".equals(suffix)) {
      pos++;
      return base.withNullable(true);
    }
    if ("NOT".equals(suffix)) {
      pos++;
      if (!"NULL".equals(peekUpper())) {
        throw error("expected NULL after NOT");
      }
      pos++;
      return base.withNullable(false);
    }
    return base.withNullable(base.nullable() || !nested);
  }

  private boolean unsigned() {
    if ("UNSIGNED".equals(peekUpper())) {
      pos++;
      return true;
    }
    return false;
  }

  private DataType prim(Kind kind) {
    return DataType.of(kind, false);
  }

  private DataType base() throws KilnException {
    String word = next();
    String name = word.toUpperCase(Locale.ROOT);
    switch (name) {
      case "BOOLEAN", "BOOL":
        return prim(Kind.BOOLEAN);
      case "TINYINT", "INT8":
        return prim(unsigned() ? Kind.UINT8 : Kind.INT8);
      case "SMALLINT", "INT16":
        return prim(unsigned() ? Kind.UINT16 : Kind.INT16);
      case "INT", "INTEGER", "INT32":
        return prim(unsigned() ? Kind.UINT32 : Kind.INT32);
      case "BIGINT", "INT64":
        return prim(unsigned() ? Kind.UINT64 : Kind.INT64);
      case "UINT8":
        return prim(Kind.UINT8);
      case "UINT16":
        return prim(Kind.UINT16);
      case "UINT32":
        return prim(Kind.UINT32);
      case "UINT64":
        return prim(Kind.UINT64);
      case "FLOAT", "FLOAT32", "REAL":
        return prim(Kind.FLOAT32);
      case "DOUBLE", "FLOAT64":
        if ("PRECISION".equals(peekUpper())) {
          pos++;
        }
        return prim(Kind.FLOAT64);
      case "DATE":
        return prim(Kind.DATE);
      case "DATETIME", "TIMESTAMP":
        return prim(Kind.TIMESTAMP);
      case "STRING", "VARCHAR", "CHAR", "CHARACTER", "TEXT":
        if ("(".equals(peek())) {
          // A declared length, as in VARCHAR(255), does not change the Arrow type.
          pos++;
          number();
          expect(")");
        }
        return prim(Kind.STRING);
      case "BINARY", "VARBINARY":
        return prim(Kind.BINARY);
      case "VARIANT", "JSON":
        return prim(Kind.VARIANT);
      case "DECIMAL", "NUMERIC":
        return decimal();
      case "ARRAY":
        {
          expect("(");
          DataType item = type(true);
          expect(")");
          return new DataType(Kind.ARRAY, false, List.of(item), List.of(), 0, 0, 0);
        }
      case "MAP":
        {
          expect("(");
          DataType key = type(true);
          expect(",");
          DataType value = type(true);
          expect(")");
          if (key.nullable()) {
            throw error("a MAP key cannot be nullable");
          }
          return new DataType(Kind.MAP, false, List.of(key, value), List.of(), 0, 0, 0);
        }
      case "TUPLE":
        return tuple();
      case "VECTOR":
        {
          expect("(");
          int dim = number();
          expect(")");
          if (dim <= 0) {
            throw error("VECTOR dimension must be positive");
          }
          return new DataType(Kind.VECTOR, false, List.of(), List.of(), 0, 0, dim);
        }
      case "NULLABLE":
        {
          expect("(");
          DataType inner = type(true);
          expect(")");
          return inner.withNullable(true);
        }
      default:
        throw error("'" + word + "' is not a type name");
    }
  }

  private DataType decimal() throws KilnException {
    int precision = 38;
    int scale = 0;
    if ("(".equals(peek())) {
      pos++;
      precision = number();
      if (",".equals(peek())) {
        pos++;
        scale = number();
      }
      expect(")");
    }
    if (precision < 1 || precision > 76) {
      throw error("DECIMAL precision must be between 1 and 76");
    }
    if (scale < 0 || scale > precision) {
      throw error("DECIMAL scale must be between 0 and the precision");
    }
    return new DataType(Kind.DECIMAL, false, List.of(), List.of(), precision, scale, 0);
  }

  private DataType tuple() throws KilnException {
    expect("(");
    List<DataType> children = new ArrayList<>();
    List<String> names = new ArrayList<>();
    while (true) {
      String first = peek();
      String second = pos + 1 < tokens.size() ? tokens.get(pos + 1) : null;
      String name = null;
      if (first != null && second != null && isFieldName(first, second)) {
        name = first;
        pos++;
      }
      children.add(type(true));
      names.add(name != null ? name : String.valueOf(children.size()));
      String t = next();
      if (t.equals(")")) {
        break;
      }
      if (!t.equals(",")) {
        throw error("expected ',' or ')' in TUPLE but found '" + t + "'");
      }
    }
    return new DataType(Kind.TUPLE, false, children, names, 0, 0, 0);
  }

  /** A tuple field is named when a word is directly followed by a type (not by a suffix). */
  private static boolean isFieldName(String first, String second) {
    if (first.equals("(") || first.equals(")") || first.equals(",")) {
      return false;
    }
    if (second.equals("(") || second.equals(")") || second.equals(",")) {
      return false;
    }
    String s = second.toUpperCase(Locale.ROOT);
    return !s.equals("NULL") && !s.equals("NOT") && !s.equals("UNSIGNED") && !s.equals("PRECISION");
  }
}
