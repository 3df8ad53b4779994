package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.client.KubernetesClientException;

/** Writes to the API server that another writer may have beaten (409 Conflict). */
final class Conflicts {
  private Conflicts() {}

  /**
   * Runs {@code write}; false when the API server answered 409 Conflict: the object exists already,
   * or changed since it was read.
   */
  static boolean won(Runnable write) {
    try {
      write.run();
      return true;
    } catch (KubernetesClientException e) {
      if (e.getCode() == 409) {
        return false;
      }
      throw e;
    }
  }
}
