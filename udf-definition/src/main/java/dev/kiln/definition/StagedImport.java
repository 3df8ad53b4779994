package dev.kiln.definition;

import java.util.Map;
import java.util.Objects;

/**
 * One staged import of a request: its stage location (with the {@code @}), the presigned URL to
 * fetch it through and the headers to send with it (both credentials that change on every call,
 * never part of a key and never logged), and its tag (ETag or length; empty when the wire carries
 * none, as on {@code CreateWorker}).
 */
public record StagedImport(String location, String url, Map<String, String> headers, String tag) {
  public StagedImport {
    Objects.requireNonNull(location, "location");
    Objects.requireNonNull(url, "url");
    headers = Map.copyOf(headers);
    Objects.requireNonNull(tag, "tag");
  }

  /** An import with no headers to send (ApplyUdfResource's). */
  public StagedImport(String location, String url, String tag) {
    this(location, url, Map.of(), tag);
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
