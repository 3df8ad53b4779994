package dev.kiln.definition;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * One UDF as Databend defines it, whichever front door it came through: the validated spec (code,
 * handler, types, runtime version), its package requirements as written (the spec's {@code
 * packages}, then the code's PEP 723 dependencies; a {@code CreateWorker} script's pip line has
 * both already) and its staged imports with this request's URLs. Immutable; everything that can be
 * checked without Python packaging, images or sandboxes has been checked.
 *
 * @param spec the validated spec
 * @param requirements the package requirements: the spec's, then the PEP 723 block (from a script:
 *     its pip line's, where Query put the PEP 723 block first)
 * @param imports the staged imports in the spec's order (later ones win on name clashes)
 */
public record UdfDefinition(
    RuntimeSpec spec, List<PackageRequirement> requirements, List<StagedImport> imports) {

  public UdfDefinition {
    Objects.requireNonNull(spec, "spec");
    requirements = List.copyOf(requirements);
    imports = List.copyOf(imports);
  }

  /**
   * The definition of an {@code ApplyUdfResource} request: its JSON spec, and the URL and tag the
   * request carries for each import the spec names ({@code given}, by location).
   *
   * @throws KilnException {@link ErrorCode#INVALID_SPEC}, {@link ErrorCode#HANDLER_NOT_DEFINED} or
   *     {@link ErrorCode#IMPORT_MISMATCH}, with a message that names the field and says what to do
   */
  public static UdfDefinition fromSpec(String json, List<StagedImport> given) throws KilnException {
    RuntimeSpec spec;
    List<PackageRequirement> requirements;
    try {
      spec = RuntimeSpec.parse(json);
      HandlerCheck.requireDefined(spec.code(), spec.handler());
    } catch (KilnException e) {
      throw e.in("invalid UDF spec");
    }
    try {
      requirements = requirements(spec);
    } catch (KilnException e) {
      throw e.in("invalid UDF spec: the code's PEP 723 block (# /// script)");
    }
    return new UdfDefinition(spec, requirements, stagedImports(spec, given));
  }

  /**
   * The definition of a {@code CreateWorker} request: the bash script Databend Query renders for a
   * sandboxed UDF, read as text and never run. Its {@code pip install} line already holds the
   * code's PEP 723 dependencies, then the UDF's packages: these are the requirements (and the
   * spec's packages), in that order. Its imports carry URL and headers but no tag (the wire has
   * none). The runtime version is the default, so the spec and its content key are what a JSON spec
   * with the same code, handler, types, packages and import locations gives.
   *
   * @throws KilnException {@link ErrorCode#INVALID_SPEC} when the script is not in the shape Query
   *     renders (the message says which part) or its types or handler are invalid, or {@link
   *     ErrorCode#HANDLER_NOT_DEFINED}; every message starts with {@code invalid CreateWorker
   *     script: }
   */
  public static UdfDefinition fromWorkerScript(String script) throws KilnException {
    return WorkerScript.parse(script);
  }

  /** {@code packages}, then the code's PEP 723 dependencies, each with where it is written. */
  private static List<PackageRequirement> requirements(RuntimeSpec spec) throws KilnException {
    List<PackageRequirement> out = new ArrayList<>();
    for (int i = 0; i < spec.packages().size(); i++) {
      out.add(
          new PackageRequirement(spec.packages().get(i), SpecErrors.field("packages[" + i + "]")));
    }
    List<String> inline = Pep723.dependencies(spec.code());
    if (!inline.isEmpty()) {
      String origin =
          "the code's PEP 723 block (# /// script): PEP 723 block at line "
              + Pep723.scriptLine(spec.code()).orElse(1);
      inline.forEach(text -> out.add(new PackageRequirement(text, origin)));
    }
    return out;
  }

  /** Each import the spec names, with the URL and tag the request carries for it. */
  private static List<StagedImport> stagedImports(RuntimeSpec spec, List<StagedImport> given)
      throws KilnException {
    Map<String, StagedImport> byLocation = new HashMap<>();
    for (StagedImport imp : given) {
      byLocation.put(imp.location(), imp);
    }
    List<StagedImport> out = new ArrayList<>();
    for (String location : spec.imports()) {
      StagedImport imp = byLocation.get(location);
      if (imp == null || imp.url().isBlank()) {
        throw new KilnException(
            ErrorCode.IMPORT_MISMATCH,
            "the spec imports "
                + location
                + " but the request carries no UdfImport (URL and tag) for it");
      }
      out.add(imp);
    }
    return out;
  }

  /**
   * This definition with other imports: the same locations in the same order, e.g. with the tags
   * Kiln derived for imports that arrived without one.
   */
  public UdfDefinition withImports(List<StagedImport> tagged) {
    if (!tagged.stream()
        .map(StagedImport::location)
        .toList()
        .equals(imports.stream().map(StagedImport::location).toList())) {
      throw new IllegalArgumentException("the imports must keep their locations and order");
    }
    return new UdfDefinition(spec, requirements, tagged);
  }

  public String handler() {
    return spec.handler();
  }

  public List<DataType> inputTypes() {
    return spec.inputTypes();
  }

  public DataType resultType() {
    return spec.resultType();
  }

  public String code() {
    return spec.code();
  }

  /** The Python version the UDF asks for, e.g. {@code 3.12.2}. */
  public String runtimeVersion() {
    return spec.runtimeVersion();
  }

  /** The requirement strings, in order. */
  public List<String> requirementTexts() {
    return requirements.stream().map(PackageRequirement::text).toList();
  }

  /** The imports' identities for keys: location and tag, never the URL. */
  public List<ImportRef> importRefs() {
    return imports.stream().map(StagedImport::ref).toList();
  }

  /**
   * The content key of this UDF on a base image with a runner version: what Databend asked for, so
   * the same request always gets the same key. Package locks and import bytes are resolved later
   * and go into the image's key instead, so computing this never waits on an index or a download.
   */
  public ContentKey key(String baseImageDigest, String runnerVersion) {
    return ContentKeys.compute(spec, importRefs(), baseImageDigest, runnerVersion, "");
  }
}
