package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.Namespaced;
import io.fabric8.kubernetes.client.CustomResource;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.model.annotation.Group;
import io.fabric8.kubernetes.model.annotation.Kind;
import io.fabric8.kubernetes.model.annotation.Plural;
import io.fabric8.kubernetes.model.annotation.Singular;
import io.fabric8.kubernetes.model.annotation.Version;
import java.util.List;

/**
 * The desired state of one UDF's (or Databend worker's) sandboxes in the API server, in Kiln's own
 * namespace: what to run ({@link UdfWorkerSpec}) and what runs ({@link UdfWorkerStatus}). Every
 * Kiln replica reads these through an informer; the leader's {@link UdfWorkerReconciler} turns them
 * into pods in the tenant's namespace. The CRD is {@code deploy/kubernetes/udfworker-crd.yaml}.
 */
@Group(UdfWorker.GROUP)
@Version(UdfWorker.VERSION)
@Kind("UdfWorker")
@Plural("udfworkers")
@Singular("udfworker")
public class UdfWorker extends CustomResource<UdfWorkerSpec, UdfWorkerStatus>
    implements Namespaced {
  public static final String GROUP = "kiln.dev";
  public static final String VERSION = "v1alpha1";

  /**
   * Replaces a worker's spec with a JSON patch (RFC 6902) of the spec alone, without its resource
   * version: it never conflicts with the reconciler's status updates.
   */
  public static void replaceSpec(
      KubernetesClient client, String namespace, String name, UdfWorkerSpec spec) {
    JsonPatch.apply(
        client.resources(UdfWorker.class).inNamespace(namespace).withName(name),
        List.of(JsonPatch.add("/spec", spec)));
  }

  @Override
  protected UdfWorkerSpec initSpec() {
    return new UdfWorkerSpec();
  }

  @Override
  protected UdfWorkerStatus initStatus() {
    return new UdfWorkerStatus();
  }
}
