package dev.kiln.controlplane;

import dev.kiln.resolver.ImportRef;
import dev.kiln.resolver.RuntimeSpec;
import java.util.List;
import java.util.Objects;

/**
 * A validated ApplyUdfResource request, as the provisioning pipeline needs it.
 *
 * @param spec the parsed spec
 * @param requirements package requirements: the spec's {@code packages} followed by the
 *     dependencies of the code's PEP 723 block, each already parsed once
 * @param imports the staged imports in the spec's order (later ones win on name clashes), each with
 *     the presigned URL of this request
 * @param runtime the base image the spec's runtime_version maps to
 */
record UdfRequest(
    RuntimeSpec spec,
    List<String> requirements,
    List<StagedImport> imports,
    Runtimes.Runtime runtime) {

  /** One staged import: stage location, presigned URL (changes on every call) and tag. */
  record StagedImport(String location, String url, String tag) {
    StagedImport {
      Objects.requireNonNull(location, "location");
      Objects.requireNonNull(url, "url");
      Objects.requireNonNull(tag, "tag");
    }

    ImportRef ref() {
      return new ImportRef(location, tag);
    }
  }

  UdfRequest {
    requirements = List.copyOf(requirements);
    imports = List.copyOf(imports);
  }

  /** The imports' identities for the content key: location and tag, never the URL. */
  List<ImportRef> importRefs() {
    return imports.stream().map(StagedImport::ref).toList();
  }
}
