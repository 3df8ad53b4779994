package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerBuilder;
import io.fabric8.kubernetes.api.model.EnvFromSourceBuilder;
import io.fabric8.kubernetes.api.model.EnvVar;
import io.fabric8.kubernetes.api.model.IntOrString;
import io.fabric8.kubernetes.api.model.Namespace;
import io.fabric8.kubernetes.api.model.NamespaceBuilder;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.PodSecurityContext;
import io.fabric8.kubernetes.api.model.PodSecurityContextBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.api.model.SecurityContext;
import io.fabric8.kubernetes.api.model.SecurityContextBuilder;
import io.fabric8.kubernetes.api.model.TolerationBuilder;
import io.fabric8.kubernetes.api.model.Volume;
import io.fabric8.kubernetes.api.model.VolumeBuilder;
import io.fabric8.kubernetes.api.model.VolumeMount;
import io.fabric8.kubernetes.api.model.VolumeMountBuilder;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyBuilder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The Kubernetes objects of a tenant's sandboxes: the tenant's namespace, its network policy (only
 * Kiln's pods may connect, on the runner port; no egress), and a worker's pods (the image's runner
 * listener under the gVisor RuntimeClass, unprivileged, read-only, with no service-account token).
 * Pure functions of the worker and the settings.
 */
public final class SandboxPods {
  /** The name of the network policy in every tenant namespace. */
  public static final String NETWORK_POLICY = "kiln-sandboxes";

  /** The name of the second one: pods of workers with egress may reach the egress proxy. */
  public static final String EGRESS_NETWORK_POLICY = "kiln-sandboxes-egress";

  /** The Service (in Kiln's namespace) of the egress proxy Deployment, and its pods' label. */
  public static final String EGRESS_PROXY = "kiln-egress";

  /** The egress proxy's port. */
  public static final int EGRESS_PROXY_PORT = 3128;

  /** The GPU resource name of NVIDIA's device plugin. */
  public static final String GPU = "nvidia.com/gpu";

  private SandboxPods() {}

  /** The tenant's namespace, labelled as Kiln's. */
  public static Namespace namespace(String tenant) {
    return new NamespaceBuilder()
        .withNewMetadata()
        .withName(KubernetesNames.tenantNamespace(tenant))
        .withLabels(
            Map.of(
                KubernetesNames.MANAGED_BY,
                "kiln",
                KubernetesNames.TENANT,
                KubernetesNames.labelValue(tenant)))
        .endMetadata()
        .build();
  }

  /**
   * Every pod in the tenant's namespace admits TCP connections to the runner port from Kiln's pods
   * only, and may connect nowhere (no egress, DNS included).
   */
  public static NetworkPolicy networkPolicy(String tenant, KubernetesSettings s) {
    return new NetworkPolicyBuilder()
        .withNewMetadata()
        .withName(NETWORK_POLICY)
        .withNamespace(KubernetesNames.tenantNamespace(tenant))
        .withLabels(Map.of(KubernetesNames.MANAGED_BY, "kiln"))
        .endMetadata()
        .withNewSpec()
        .withNewPodSelector()
        .endPodSelector()
        .withPolicyTypes("Ingress", "Egress")
        .addNewIngress()
        .addNewFrom()
        .withNewNamespaceSelector()
        .withMatchLabels(Map.of("kubernetes.io/metadata.name", s.kilnNamespace()))
        .endNamespaceSelector()
        .withNewPodSelector()
        .withMatchLabels(s.kilnPodLabels())
        .endPodSelector()
        .endFrom()
        .addNewPort()
        .withProtocol("TCP")
        .withPort(new IntOrString(s.runnerPort()))
        .endPort()
        .endIngress()
        .withEgress(List.of())
        .endSpec()
        .build();
  }

  /**
   * Pods of workers with an egress allow-list ({@link KubernetesNames#EGRESS}) may also connect to
   * the egress proxy's pods on its port, and nowhere else (no DNS: they reach the proxy by its
   * Service's address, and the proxy resolves names).
   */
  public static NetworkPolicy egressNetworkPolicy(String tenant, KubernetesSettings s) {
    return new NetworkPolicyBuilder()
        .withNewMetadata()
        .withName(EGRESS_NETWORK_POLICY)
        .withNamespace(KubernetesNames.tenantNamespace(tenant))
        .withLabels(Map.of(KubernetesNames.MANAGED_BY, "kiln"))
        .endMetadata()
        .withNewSpec()
        .withNewPodSelector()
        .withMatchLabels(Map.of(KubernetesNames.EGRESS, "true"))
        .endPodSelector()
        .withPolicyTypes("Egress")
        .addNewEgress()
        .addNewTo()
        .withNewNamespaceSelector()
        .withMatchLabels(Map.of("kubernetes.io/metadata.name", s.kilnNamespace()))
        .endNamespaceSelector()
        .withNewPodSelector()
        .withMatchLabels(Map.of("app.kubernetes.io/name", EGRESS_PROXY))
        .endPodSelector()
        .endTo()
        .addNewPort()
        .withProtocol("TCP")
        .withPort(new IntOrString(EGRESS_PROXY_PORT))
        .endPort()
        .endEgress()
        .endSpec()
        .build();
  }

  /**
   * A hash of everything a worker's pod is made of: a pod whose {@link KubernetesNames#TEMPLATE}
   * label differs is out of date.
   */
  public static String template(UdfWorkerSpec w, KubernetesSettings s) {
    return KubernetesNames.hash(
        String.join(
            "\0",
            String.valueOf(w.getImage()),
            String.join("\u0001", w.getCommand()),
            new TreeMap<>(w.getEnv()).toString(),
            String.valueOf(w.getEnvSecret()),
            String.valueOf(w.getEnvVersion()),
            w.getCpu(),
            w.getMemory(),
            Integer.toString(w.getGpu()),
            Boolean.toString(w.isEgress()),
            Integer.toString(s.runnerPort()),
            s.runtimeClass(),
            s.gpuRuntimeClass(),
            new TreeMap<>(s.gpuNodeSelector()).toString(),
            s.gpuTaint(),
            Long.toString(s.runAsUser())));
  }

  /** The name of the Secret holding the variables of the worker {@code workerName}'s UDF. */
  static String envSecretName(String workerName) {
    return workerName + "-env";
  }

  /**
   * The Secret of a worker's UDF variables, in its tenant's namespace; {@code version} is a hash of
   * {@code env} (the spec's {@link UdfWorkerSpec#getEnvVersion}).
   */
  static Secret envSecret(String workerName, String tenant, Map<String, String> env) {
    Map<String, String> data = new TreeMap<>();
    env.forEach(
        (k, v) ->
            data.put(k, Base64.getEncoder().encodeToString(v.getBytes(StandardCharsets.UTF_8))));
    return new SecretBuilder()
        .withNewMetadata()
        .withName(envSecretName(workerName))
        .withNamespace(KubernetesNames.tenantNamespace(tenant))
        .addToLabels(KubernetesNames.MANAGED_BY, "kiln")
        .addToLabels(KubernetesNames.WORKER, workerName)
        .endMetadata()
        .withType("Opaque")
        .withData(data)
        .build();
  }

  /** A new pod of the worker named {@code podName}, in its tenant's namespace. */
  public static Pod pod(String workerName, UdfWorkerSpec w, KubernetesSettings s, String podName) {
    Map<String, String> labels = new TreeMap<>();
    labels.put(KubernetesNames.MANAGED_BY, "kiln");
    labels.put(KubernetesNames.COMPONENT, KubernetesNames.SANDBOX);
    labels.put(KubernetesNames.WORKER, workerName);
    labels.put(KubernetesNames.TENANT, KubernetesNames.labelValue(w.getTenant()));
    labels.put(KubernetesNames.TEMPLATE, template(w, s));
    if (w.isEgress()) {
      labels.put(KubernetesNames.EGRESS, "true");
    }
    Map<String, Quantity> resources = new TreeMap<>();
    resources.put("cpu", new Quantity(w.getCpu()));
    resources.put("memory", new Quantity(w.getMemory()));
    Map<String, Quantity> limits = new TreeMap<>(resources);
    if (w.getGpu() > 0) {
      limits.put(GPU, new Quantity(Integer.toString(w.getGpu())));
    }
    List<EnvVar> env = new ArrayList<>();
    new TreeMap<>(w.getEnv()).forEach((k, v) -> env.add(new EnvVar(k, v, null)));
    Container runners =
        new ContainerBuilder()
            .withName("runners")
            .withImage(w.getImage())
            .withImagePullPolicy("IfNotPresent")
            .withCommand(w.getCommand())
            .withEnv(env)
            .withEnvFrom(
                w.getEnvSecret() == null || w.getEnvSecret().isEmpty()
                    ? List.of()
                    : List.of(
                        new EnvFromSourceBuilder()
                            .withNewSecretRef()
                            .withName(w.getEnvSecret())
                            .withOptional(false)
                            .endSecretRef()
                            .build()))
            .addNewPort()
            .withName("runner")
            .withContainerPort(s.runnerPort())
            .withProtocol("TCP")
            .endPort()
            .withNewReadinessProbe()
            .withNewTcpSocket()
            .withPort(new IntOrString(s.runnerPort()))
            .endTcpSocket()
            .withPeriodSeconds(1)
            .endReadinessProbe()
            .withNewResources()
            .withRequests(resources)
            .withLimits(limits)
            .endResources()
            .withSecurityContext(lockedDown(s))
            .withVolumeMounts(tmpMount())
            .build();
    PodBuilder pod =
        new PodBuilder()
            .withNewMetadata()
            .withName(podName)
            .withNamespace(KubernetesNames.tenantNamespace(w.getTenant()))
            .withLabels(labels)
            .endMetadata()
            .withNewSpec()
            .withRuntimeClassName(w.getGpu() > 0 ? s.gpuRuntimeClass() : s.runtimeClass())
            .withAutomountServiceAccountToken(false)
            .withEnableServiceLinks(false)
            .withRestartPolicy("Always")
            .withTerminationGracePeriodSeconds(5L)
            .withSecurityContext(podSecurity(s))
            .withContainers(runners)
            .withVolumes(tmpVolume())
            .endSpec();
    if (w.getGpu() > 0) {
      pod.editSpec()
          .withNodeSelector(s.gpuNodeSelector())
          .withTolerations(
              s.gpuTaint().isEmpty()
                  ? List.of()
                  : List.of(
                      new TolerationBuilder()
                          .withKey(s.gpuTaint())
                          .withOperator("Exists")
                          .withEffect("NoSchedule")
                          .build()))
          .endSpec();
    }
    return pod.build();
  }

  /**
   * A container of Kiln's pods: unprivileged ({@link KubernetesSettings#runAsUser}), no privilege
   * escalation, no capabilities, a read-only root file system.
   */
  static SecurityContext lockedDown(KubernetesSettings s) {
    return new SecurityContextBuilder()
        .withAllowPrivilegeEscalation(false)
        .withReadOnlyRootFilesystem(true)
        .withRunAsNonRoot(true)
        .withRunAsUser(s.runAsUser())
        .withRunAsGroup(s.runAsUser())
        .withNewCapabilities()
        .withDrop("ALL")
        .endCapabilities()
        .build();
  }

  /** A pod of Kiln's: unprivileged, with the runtime's default seccomp profile. */
  static PodSecurityContext podSecurity(KubernetesSettings s) {
    return new PodSecurityContextBuilder()
        .withRunAsNonRoot(true)
        .withRunAsUser(s.runAsUser())
        .withNewSeccompProfile()
        .withType("RuntimeDefault")
        .endSeccompProfile()
        .build();
  }

  /** The only writable place of a pod's read-only root: {@code /tmp}, in memory. */
  static Volume tmpVolume() {
    return new VolumeBuilder()
        .withName("tmp")
        .withNewEmptyDir()
        .withMedium("Memory")
        .endEmptyDir()
        .build();
  }

  static VolumeMount tmpMount() {
    return new VolumeMountBuilder().withName("tmp").withMountPath("/tmp").build();
  }

  /** Whether the pod's readiness probe passes (its runner listener accepts connections). */
  public static boolean isReady(Pod p) {
    return p.getStatus() != null
        && p.getStatus().getPodIP() != null
        && !p.getStatus().getPodIP().isEmpty()
        && p.getStatus().getConditions() != null
        && p.getStatus().getConditions().stream()
            .anyMatch(c -> "Ready".equals(c.getType()) && "True".equals(c.getStatus()));
  }

  /** Whether the pod ended for good (a pod that ended is replaced, not restarted). */
  public static boolean hasEnded(Pod p) {
    String phase = p.getStatus() == null ? null : p.getStatus().getPhase();
    return "Succeeded".equals(phase) || "Failed".equals(phase);
  }
}
