/**
 * Sandboxes on Kubernetes: a {@link dev.kiln.provisioner.kubernetes.UdfWorker} custom resource per
 * tenant's worker or UDF holds the desired state; the {@link
 * dev.kiln.provisioner.kubernetes.UdfWorkerReconciler} of the Kiln replica holding the lease turns
 * each into pods under the gVisor RuntimeClass in the tenant's namespace ({@link
 * dev.kiln.provisioner.kubernetes.SandboxPods}), each pod running the image's runner listener on
 * TCP. The manifests are under {@code deploy/kubernetes/}.
 *
 * <p>Allowed dependencies: those of {@code dev.kiln.provisioner}, and the fabric8 Kubernetes
 * client. Nothing here knows Python, Arrow or how images are built: the image reference and the
 * runner's command come in the resource.
 */
package dev.kiln.provisioner.kubernetes;
