package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.BigIntVector;
import org.apache.arrow.vector.VectorSchemaRoot;

/**
 * The load of the restart test and benchmark: {@code add(BIGINT NULL, BIGINT NULL)} over numbered
 * mini-batches whose every result can be checked, NULLs included.
 */
public final class AddLoad {
  /** The argument types, as Databend writes them in the spec. */
  public static final List<String> TYPES = List.of("BIGINT NULL", "BIGINT NULL");

  /** The UDF's code. */
  public static final String CODE =
      "def add(a, b):\n    return None if a is None or b is None else a + b\n";

  private AddLoad() {}

  /**
   * Mini-batch {@code i} of {@code rows} rows: arg1 = i·rows + r (NULL every 7th), arg2 = 3r (NULL
   * every 11th), Databend's input schema; the caller closes it.
   */
  public static VectorSchemaRoot input(BufferAllocator allocator, int i, int rows) {
    List<DataType> types = new ArrayList<>();
    for (String t : TYPES) {
      try {
        types.add(DataType.parse(t));
      } catch (KilnException e) {
        throw new IllegalStateException(e);
      }
    }
    VectorSchemaRoot root = VectorSchemaRoot.create(DatabendCalls.inputSchema(types), allocator);
    BigIntVector a = (BigIntVector) root.getVector(0);
    BigIntVector b = (BigIntVector) root.getVector(1);
    a.allocateNew(rows);
    b.allocateNew(rows);
    for (int r = 0; r < rows; r++) {
      long n = (long) i * rows + r;
      if (n % 7 == 0) {
        a.setNull(r);
      } else {
        a.set(r, n);
      }
      if (n % 11 == 0) {
        b.setNull(r);
      } else {
        b.set(r, 3L * r);
      }
    }
    root.setRowCount(rows);
    return root;
  }

  /** Rows of mini-batch {@code i}'s result that are not a+b (NULL when either is NULL). */
  public static int wrongRows(DatabendCalls.Outcome o, int i, int rows) {
    int wrong = 0;
    int r = 0;
    for (var column : o.columns()) {
      BigIntVector v = (BigIntVector) column;
      for (int j = 0; j < v.getValueCount(); j++, r++) {
        long n = (long) i * rows + r;
        boolean isNull = n % 7 == 0 || n % 11 == 0;
        if (isNull ? !v.isNull(j) : v.isNull(j) || v.get(j) != n + 3L * r) {
          wrong++;
        }
      }
    }
    return wrong + Math.abs(rows - r);
  }
}
