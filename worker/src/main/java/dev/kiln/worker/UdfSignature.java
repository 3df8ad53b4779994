package dev.kiln.worker;

import dev.kiln.definition.DataType;
import dev.kiln.definition.RuntimeSpec;
import dev.kiln.definition.UdfDefinition;
import java.util.List;
import java.util.Objects;

/** What the endpoint needs to know of a UDF to check and convert its data. */
public record UdfSignature(String handler, List<DataType> inputTypes, DataType resultType) {
  public UdfSignature {
    Objects.requireNonNull(handler, "handler");
    Objects.requireNonNull(resultType, "resultType");
    inputTypes = List.copyOf(inputTypes);
  }

  public static UdfSignature of(RuntimeSpec spec) {
    return new UdfSignature(spec.handler(), spec.inputTypes(), spec.resultType());
  }

  public static UdfSignature of(UdfDefinition definition) {
    return of(definition.spec());
  }
}
