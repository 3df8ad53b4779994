package dev.kiln.definition;

import dev.kiln.base.KilnException;
import java.util.List;
import java.util.Objects;

/**
 * A validated UDF runtime spec, as Databend sends it in {@code ApplyUdfResourceRequest.spec}.
 *
 * @param version spec format version (1)
 * @param kind resource kind ({@code udf})
 * @param language {@code python}
 * @param handler the Python function to call, a top-level name in {@code code}
 * @param inputTypes argument types, in order
 * @param resultType the result type
 * @param imports stage locations of imports, in order (later ones win on name clashes)
 * @param packages raw requirement strings
 * @param runtimeVersion requested Python version ({@code 3.12.2} when absent)
 * @param code the UDF body
 */
public record RuntimeSpec(
    int version,
    String kind,
    String language,
    String handler,
    List<DataType> inputTypes,
    DataType resultType,
    List<String> imports,
    List<String> packages,
    String runtimeVersion,
    String code) {

  /** The runtime version Databend assumes when a spec names none. */
  public static final String DEFAULT_RUNTIME_VERSION = "3.12.2";

  public RuntimeSpec {
    Objects.requireNonNull(kind, "kind");
    Objects.requireNonNull(language, "language");
    Objects.requireNonNull(handler, "handler");
    Objects.requireNonNull(resultType, "resultType");
    Objects.requireNonNull(runtimeVersion, "runtimeVersion");
    Objects.requireNonNull(code, "code");
    inputTypes = List.copyOf(inputTypes);
    imports = List.copyOf(imports);
    packages = List.copyOf(packages);
  }

  /** Parses and validates the JSON spec; see {@link SpecParser}. */
  public static RuntimeSpec parse(String json) throws KilnException {
    return SpecParser.parse(json);
  }

  /**
   * A canonical JSON form: keys sorted, compact, types in canonical spelling. Key order, whitespace
   * and type aliases in the original do not change it.
   */
  public String canonicalJson() {
    return SpecParser.canonicalJson(this);
  }
}
