package dev.kiln.definition;

import java.util.Objects;

/**
 * A staged import as identified for caching: its stage location (with the {@code @}) and its tag
 * (ETag, or content length when the storage has none). Never the presigned URL, which changes on
 * every call.
 */
public record ImportRef(String location, String tag) {
  public ImportRef {
    Objects.requireNonNull(location, "location");
    Objects.requireNonNull(tag, "tag");
  }
}
