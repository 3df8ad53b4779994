package dev.kiln.provisioner.kubernetes;

import java.time.Duration;
import java.util.Map;
import java.util.Objects;

/**
 * How Kiln runs sandboxes on a Kubernetes cluster, the same for every worker.
 *
 * @param kilnNamespace where Kiln's own pods, its {@link UdfWorker} resources and its leader lease
 *     live
 * @param kilnPodLabels labels of Kiln's own pods: the only pods a sandbox pod admits connections
 *     from
 * @param runnerPort the TCP port of every sandbox pod's runner listener
 * @param runtimeClass the RuntimeClass of sandbox pods ({@code gvisor})
 * @param gpuRuntimeClass the RuntimeClass of pods with GPUs (gVisor with {@code nvproxy})
 * @param gpuNodeSelector node labels a pod with GPUs is scheduled by
 * @param gpuTaint the taint key of GPU nodes that pods with GPUs tolerate; empty for none
 * @param runAsUser the unprivileged user id sandbox pods run as
 * @param leaseDuration how long a leader's lease lasts without renewal (failover takes up to this)
 */
public record KubernetesSettings(
    String kilnNamespace,
    Map<String, String> kilnPodLabels,
    int runnerPort,
    String runtimeClass,
    String gpuRuntimeClass,
    Map<String, String> gpuNodeSelector,
    String gpuTaint,
    long runAsUser,
    Duration leaseDuration) {

  /** The label of Kiln's own pods in the manifests ({@code deploy/kubernetes/}). */
  public static final Map<String, String> KILN_POD_LABELS =
      Map.of("app.kubernetes.io/name", "kiln");

  public KubernetesSettings {
    Objects.requireNonNull(kilnNamespace, "kilnNamespace");
    kilnPodLabels = Map.copyOf(kilnPodLabels);
    gpuNodeSelector = Map.copyOf(gpuNodeSelector);
    Objects.requireNonNull(runtimeClass, "runtimeClass");
    Objects.requireNonNull(gpuRuntimeClass, "gpuRuntimeClass");
    Objects.requireNonNull(gpuTaint, "gpuTaint");
    Objects.requireNonNull(leaseDuration, "leaseDuration");
    if (runnerPort < 1 || runnerPort > 65535) {
      throw new IllegalArgumentException("not a TCP port: " + runnerPort);
    }
  }

  /** The defaults the manifests assume, for Kiln in {@code kilnNamespace}. */
  public static KubernetesSettings defaults(String kilnNamespace) {
    return new KubernetesSettings(
        kilnNamespace,
        KILN_POD_LABELS,
        7070,
        "gvisor",
        "gvisor-nvproxy",
        Map.of("nvidia.com/gpu.present", "true"),
        "nvidia.com/gpu",
        65534,
        Duration.ofSeconds(15));
  }

  /** The same settings with another lease duration (tests fail over faster). */
  public KubernetesSettings withLeaseDuration(Duration d) {
    return new KubernetesSettings(
        kilnNamespace,
        kilnPodLabels,
        runnerPort,
        runtimeClass,
        gpuRuntimeClass,
        gpuNodeSelector,
        gpuTaint,
        runAsUser,
        d);
  }
}
