package dev.kiln.definition;

import java.util.Objects;

/**
 * One staged import of a request: its stage location (with the {@code @}), the presigned URL to
 * fetch it through (a credential that changes on every call, never part of a key and never logged)
 * and its tag (ETag or length; empty when unknown).
 */
public record StagedImport(String location, String url, String tag) {
  public StagedImport {
    Objects.requireNonNull(location, "location");
    Objects.requireNonNull(url, "url");
    Objects.requireNonNull(tag, "tag");
  }

  /** What identifies the import's content for keys and caches: location and tag. */
  public ImportRef ref() {
    return new ImportRef(location, tag);
  }

  @Override
  public String toString() {
    return "StagedImport[" + location + ", tag=" + tag + "]";
  }
}
