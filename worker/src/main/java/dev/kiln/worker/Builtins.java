package dev.kiln.worker;

import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.LargeVarCharVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.ViewVarCharVector;

/**
 * The functions every {@code databend-udf} server offers, answered in the worker without a token or
 * a sandbox: {@code builtin_healthy()} and {@code builtin_echo(VARCHAR)}.
 */
final class Builtins {

  static final String HEALTHY = "builtin_healthy";
  static final String ECHO = "builtin_echo";

  private static final DataType INT = DataType.of(DataType.Kind.INT32, true);
  private static final DataType VARCHAR = DataType.of(DataType.Kind.STRING, true);
  private static final Map<String, UdfSignature> SIGNATURES =
      Map.of(
          HEALTHY, new UdfSignature(HEALTHY, List.of(), INT),
          ECHO, new UdfSignature(ECHO, List.of(VARCHAR), VARCHAR));

  private Builtins() {}

  static Optional<UdfSignature> signature(String name) {
    return Optional.ofNullable(SIGNATURES.get(name));
  }

  /** Computes a builtin over a batch whose schema has been checked against its signature. */
  static FieldVector compute(
      String name, List<FieldVector> inputs, int rows, BufferAllocator allocator)
      throws KilnException {
    FieldVector out =
        ArrowTypes.field(ArrowTypes.RESULT_FIELD, SIGNATURES.get(name).resultType())
            .createVector(allocator);
    try {
      if (name.equals(HEALTHY)) {
        IntVector ones = (IntVector) out;
        ones.allocateNew(rows);
        for (int i = 0; i < rows; i++) {
          ones.set(i, 1);
        }
      } else {
        LargeVarCharVector echo = (LargeVarCharVector) out;
        FieldVector in = inputs.get(0);
        echo.allocateNew(rows);
        for (int i = 0; i < rows; i++) {
          if (in.isNull(i)) {
            echo.setNull(i);
          } else {
            echo.setSafe(i, bytes(in, i));
          }
        }
      }
      out.setValueCount(rows);
      return out;
    } catch (RuntimeException e) {
      out.close();
      throw e;
    }
  }

  private static byte[] bytes(FieldVector v, int i) {
    if (v instanceof VarCharVector s) {
      return s.get(i);
    }
    if (v instanceof LargeVarCharVector s) {
      return s.get(i);
    }
    return ((ViewVarCharVector) v).get(i);
  }
}
