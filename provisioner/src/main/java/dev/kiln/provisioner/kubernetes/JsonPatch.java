package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.client.dsl.EditReplacePatchable;
import io.fabric8.kubernetes.client.dsl.base.PatchContext;
import io.fabric8.kubernetes.client.dsl.base.PatchType;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.util.List;
import java.util.Map;

/**
 * JSON patches (RFC 6902) of Kiln's objects: members added or replaced, members removed (not a
 * merge patch with null, which the mock API server of the tests keeps as null), and the paths of
 * the members replicas own — a replica's claim of a worker's pods, its mark on a pod.
 */
final class JsonPatch {
  private JsonPatch() {}

  /** Adds the member at {@code path}, or replaces it. */
  static Map<String, Object> add(String path, Object value) {
    return Map.of("op", "add", "path", path, "value", value);
  }

  /** Removes the member at {@code path} (the API server refuses when there is none). */
  static Map<String, Object> remove(String path) {
    return Map.of("op", "remove", "path", path);
  }

  /** The path of {@code replica}'s claim in a {@link UdfWorker}. */
  static String claim(String replica) {
    return "/spec/claims/" + segment(replica);
  }

  /** The path of the annotation {@code key}. */
  static String annotation(String key) {
    return "/metadata/annotations/" + segment(key);
  }

  /**
   * Merges {@code doc} into {@code resource} (a JSON merge patch: what it sets, and nothing
   * removed); returns the resource as the API server answered.
   */
  static <T> T merge(EditReplacePatchable<T> resource, Map<String, Object> doc) {
    return resource.patch(PatchContext.of(PatchType.JSON_MERGE), Serialization.asJson(doc));
  }

  /** Sets the annotation {@code key} of {@code resource} to {@code value}; returns the answer. */
  static <T> T annotate(EditReplacePatchable<T> resource, String key, String value) {
    return merge(resource, Map.of("metadata", Map.of("annotations", Map.of(key, value))));
  }

  /** Sends {@code ops} to {@code resource}, as one patch. */
  static void apply(EditReplacePatchable<?> resource, List<Map<String, Object>> ops) {
    resource.patch(PatchContext.of(PatchType.JSON), Serialization.asJson(ops));
  }

  /** {@code s} as one segment of a JSON pointer (RFC 6901). */
  private static String segment(String s) {
    return s.replace("~", "~0").replace("/", "~1");
  }
}
