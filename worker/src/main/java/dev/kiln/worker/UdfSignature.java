package dev.kiln.worker;

import dev.kiln.resolver.DataType;
import dev.kiln.resolver.RuntimeSpec;
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
}
