package dev.kiln.worker;

import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import dev.kiln.definition.RuntimeSpec;
import java.util.ArrayList;
import java.util.List;

/** Builds runtime specs for tests from code and Databend type strings. */
final class Udfs {

  private Udfs() {}

  static RuntimeSpec spec(String handler, List<String> inputTypes, String resultType, String code) {
    try {
      List<DataType> inputs = new ArrayList<>();
      for (String t : inputTypes) {
        inputs.add(DataType.parse(t));
      }
      return new RuntimeSpec(
          1,
          "udf",
          "python",
          handler,
          inputs,
          DataType.parse(resultType),
          List.of(),
          List.of(),
          RuntimeSpec.DEFAULT_RUNTIME_VERSION,
          code);
    } catch (KilnException e) {
      throw new IllegalArgumentException(e);
    }
  }

  static DataType type(String text) {
    try {
      return DataType.parse(text);
    } catch (KilnException e) {
      throw new IllegalArgumentException(e);
    }
  }
}
