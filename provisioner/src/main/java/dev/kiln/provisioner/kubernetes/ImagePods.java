package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.ContainerStateTerminated;
import io.fabric8.kubernetes.api.model.ContainerStatus;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs a command once in a pod of an image, for what building images needs from a base's own Python
 * (its version and paths) when Kiln's own pod cannot run gVisor: the pod runs under the gVisor
 * RuntimeClass in Kiln's namespace, unprivileged, read-only, with no service-account token, and
 * what the command prints comes back as the container's termination message (so Kiln needs no
 * access to pod logs). A termination message holds at most {@link #MAX_OUTPUT} bytes: for small
 * answers only.
 */
public final class ImagePods {
  private static final Logger log = LoggerFactory.getLogger(ImagePods.class);

  /** The {@link KubernetesNames#COMPONENT} of these pods. */
  public static final String COMPONENT = "image-probe";

  /** The most a termination message holds (the kubelet cuts the rest). */
  public static final int MAX_OUTPUT = 4096;

  /**
   * Where the container's command writes what it prints; the kubelet mounts a file of its own there
   * and reads it when the container ends. In the pod's writable {@code /tmp}, not at the default
   * {@code /dev/termination-log}: a sandbox's {@code /dev} is not the unprivileged user's to write
   * where no kubelet made the file first.
   */
  static final String TERMINATION_LOG = "/tmp/termination-log";

  private final KubernetesClient client;
  private final KubernetesSettings settings;

  public ImagePods(KubernetesClient client, KubernetesSettings settings) {
    this.client = client;
    this.settings = settings;
  }

  /**
   * Runs {@code argv} once in a pod of {@code reference} and returns what it printed on stdout; the
   * pod is deleted after.
   *
   * @throws IOException when the pod fails, does not end within {@code timeout}, or the API server
   *     refuses; the message says which, with the end of the command's output on failure
   */
  public String run(String reference, List<String> argv, Duration timeout)
      throws IOException, InterruptedException {
    Pod pod = pod(reference, argv, timeout);
    String name = pod.getMetadata().getName();
    var resource = client.pods().inNamespace(settings.kilnNamespace()).withName(name);
    long t0 = System.nanoTime();
    try {
      client.resource(pod).create();
      Pod ended;
      try {
        ended =
            resource.waitUntilCondition(
                p -> p == null || SandboxPods.hasEnded(p),
                timeout.toMillis(),
                TimeUnit.MILLISECONDS);
      } catch (KubernetesClientException e) {
        if (Thread.interrupted()) {
          throw new InterruptedException("waiting for pod " + name);
        }
        throw new IOException(
            "pod "
                + name
                + " of "
                + reference
                + " did not end within "
                + timeout.toSeconds()
                + " s (is the gVisor RuntimeClass '"
                + settings.runtimeClass()
                + "' installed, and can the nodes pull the image?)",
            e);
      }
      if (ended == null) {
        throw new IOException("pod " + name + " was deleted before it ended");
      }
      ContainerStateTerminated end = terminated(ended);
      String message = end == null || end.getMessage() == null ? "" : end.getMessage();
      if (!"Succeeded".equals(ended.getStatus().getPhase())) {
        throw new IOException(
            "pod "
                + name
                + " of "
                + reference
                + " failed"
                + (end == null ? "" : " (exit code " + end.getExitCode() + ")")
                + (message.isBlank() ? "" : ": " + message.strip()));
      }
      if (message.length() >= MAX_OUTPUT) {
        throw new IOException(
            "pod "
                + name
                + " of "
                + reference
                + " printed "
                + MAX_OUTPUT
                + " bytes or more, which is all a pod's termination message holds; what it printed"
                + " is cut");
      }
      log.debug(
          "pod {} of {} ran {} in {} ms",
          name,
          reference,
          argv.getFirst(),
          TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
      return message;
    } catch (KubernetesClientException e) {
      throw new IOException("cannot run a pod of " + reference + ": " + e.getMessage(), e);
    } finally {
      try {
        resource.delete();
      } catch (KubernetesClientException e) {
        log.warn("deleting pod {} failed: {}", name, e.getMessage());
      }
    }
  }

  private static ContainerStateTerminated terminated(Pod p) {
    if (p.getStatus().getContainerStatuses() == null) {
      return null;
    }
    for (ContainerStatus s : p.getStatus().getContainerStatuses()) {
      if (s.getState() != null && s.getState().getTerminated() != null) {
        return s.getState().getTerminated();
      }
    }
    return null;
  }

  /**
   * The pod: its command's stdout goes to the termination log ({@code sh} redirects it; on failure,
   * with nothing written there, the kubelet reports the end of its log instead).
   */
  Pod pod(String reference, List<String> argv, Duration timeout) {
    List<String> command =
        new ArrayList<>(List.of("/bin/sh", "-c", "exec \"$@\" > " + TERMINATION_LOG, "sh"));
    command.addAll(argv);
    Map<String, Quantity> resources =
        Map.of("cpu", new Quantity("1"), "memory", new Quantity("512Mi"));
    return new PodBuilder()
        .withNewMetadata()
        .withName("kiln-probe-" + UUID.randomUUID().toString().substring(0, 13))
        .withNamespace(settings.kilnNamespace())
        .addToLabels(KubernetesNames.MANAGED_BY, "kiln")
        .addToLabels(KubernetesNames.COMPONENT, COMPONENT)
        .endMetadata()
        .withNewSpec()
        .withRuntimeClassName(settings.runtimeClass())
        .withAutomountServiceAccountToken(false)
        .withEnableServiceLinks(false)
        .withRestartPolicy("Never")
        .withActiveDeadlineSeconds(Math.max(1, timeout.toSeconds()))
        .withTerminationGracePeriodSeconds(1L)
        .withSecurityContext(SandboxPods.podSecurity(settings))
        .addNewContainer()
        .withName("probe")
        .withImage(reference)
        .withImagePullPolicy("IfNotPresent")
        .withCommand(command)
        .withTerminationMessagePath(TERMINATION_LOG)
        .withTerminationMessagePolicy("FallbackToLogsOnError")
        .withNewResources()
        .withRequests(resources)
        .withLimits(resources)
        .endResources()
        .withSecurityContext(SandboxPods.lockedDown(settings))
        .withVolumeMounts(SandboxPods.tmpMount())
        .endContainer()
        .withVolumes(SandboxPods.tmpVolume())
        .endSpec()
        .build();
  }
}
