package dev.kiln.provisioner.kubernetes;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.RunscProvisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxImage;
import dev.kiln.provisioner.SandboxNetwork;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.provisioner.SandboxSpec;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodStatusBuilder;
import io.fabric8.kubernetes.api.model.Quantity;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.informers.ResourceEventHandler;
import io.fabric8.kubernetes.client.informers.SharedIndexInformer;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A test-only stand-in for the kubelet, since none can run here: it watches Kiln's sandbox pods on
 * the (mock) API server and runs each as a real local gVisor sandbox, as a node with the gVisor
 * RuntimeClass would: the pod's image pulled from the registry by digest ({@code skopeo copy}, as a
 * node's container runtime pulls it), the pod's command as its init, its memory and CPU as limits,
 * and a network namespace of its own ({@link SandboxNetwork}) whose address becomes the pod's IP.
 * The init's first line (the runner listener's {@code listening on}) is its readiness; then it
 * writes the pod's IP and Ready condition back, as a kubelet does. A deleted pod's sandbox and
 * network are removed.
 *
 * <p>Services a test declares ({@link #routeService}) are reached as kube-proxy makes them
 * reachable: the pod's namespace gets a default route to its host end and a DNAT rule from the
 * Service's cluster address to a port on this machine. Only pods labelled {@link
 * KubernetesNames#EGRESS} get them: that stands in for the tenant namespaces' network policies,
 * which let only those pods reach the egress proxy (no CNI enforces policies here).
 */
public final class KubeletStandIn implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(KubeletStandIn.class);
  private static final ObjectMapper JSON = new ObjectMapper();

  private final KubernetesClient client;
  private final RunscProvisioner provisioner;
  private final Path images;
  private final ExecutorService work = Executors.newVirtualThreadPerTaskExecutor();
  private final Map<String, Running> running = new ConcurrentHashMap<>();
  private final AtomicInteger networks = new AtomicInteger(1000);
  private SharedIndexInformer<Pod> pods;

  private record Running(Sandbox sandbox, SandboxNetwork network) {}

  private volatile String pullLogin;

  /** Cluster address:port of a Service → the port on this machine that serves it. */
  private final Map<String, Integer> services = new ConcurrentHashMap<>();

  /**
   * Routes pods with egress to {@code clusterIp}:{@code port} (a Service) to {@code hostPort} on
   * this machine, reached at their network's host end.
   */
  public KubeletStandIn routeService(String clusterIp, int port, int hostPort) {
    services.put(clusterIp + ":" + port, hostPort);
    return this;
  }

  public KubeletStandIn(KubernetesClient client, Path workDir) throws IOException {
    this.client = client;
    this.images = Files.createDirectories(workDir.resolve("images"));
    this.provisioner =
        RunscProvisioner.builder()
            .workDir(Files.createDirectories(workDir.resolve("node")))
            .build();
  }

  /** Watches sandbox pods from now on. */
  /**
   * Pulls with {@code user} and {@code password}, as a node whose runtime has the registry's
   * credentials (a credential provider, or the node's own config) does.
   */
  public KubeletStandIn withPullLogin(String user, String password) {
    this.pullLogin = user + ":" + password;
    return this;
  }

  public KubeletStandIn start() {
    pods =
        client
            .pods()
            .inAnyNamespace()
            .withLabel(KubernetesNames.MANAGED_BY, "kiln")
            .inform(
                new ResourceEventHandler<>() {
                  @Override
                  public void onAdd(Pod p) {
                    String component =
                        p.getMetadata().getLabels().getOrDefault(KubernetesNames.COMPONENT, "");
                    if (component.equals(KubernetesNames.SANDBOX)) {
                      work.execute(() -> run(p));
                    } else if (component.equals(ImagePods.COMPONENT)) {
                      work.execute(() -> runToEnd(p));
                    }
                  }

                  @Override
                  public void onUpdate(Pod old, Pod p) {}

                  @Override
                  public void onDelete(Pod p, boolean unknown) {
                    work.execute(() -> stop(id(p)));
                  }
                });
    return this;
  }

  /** Sandboxes running for pods now. */
  public int sandboxes() {
    return running.size();
  }

  private static String id(Pod p) {
    return p.getMetadata().getNamespace() + "/" + p.getMetadata().getName();
  }

  /**
   * Writes the pod's status (its IP and readiness, or Failed for null), tried again as a kubelet
   * does when the API server does not answer: the mock API server now and then drops a request.
   */
  private void reportStatus(Pod p, String ip) {
    for (int attempt = 1; ; attempt++) {
      try {
        KubernetesMock.setPodStatus(client, p, ip);
        return;
      } catch (RuntimeException e) {
        if (attempt == 3) {
          throw e;
        }
        log.warn("pod {}: writing its status failed, again: {}", id(p), e.toString());
      }
    }
  }

  /** What kube-proxy would do for the declared Services, in the pod's network namespace. */
  private void route(SandboxNetwork network) throws IOException, InterruptedException {
    if (services.isEmpty()) {
      return;
    }
    String ns = network.namespace().getFileName().toString();
    String hostEnd = network.hostAddress().getHostAddress();
    host("ip", "-n", ns, "route", "add", "default", "via", hostEnd);
    for (Map.Entry<String, Integer> e : services.entrySet()) {
      String[] ipPort = e.getKey().split(":");
      host(
          "ip",
          "netns",
          "exec",
          ns,
          "iptables",
          "-t",
          "nat",
          "-A",
          "OUTPUT",
          "-p",
          "tcp",
          "-d",
          ipPort[0],
          "--dport",
          ipPort[1],
          "-j",
          "DNAT",
          "--to-destination",
          hostEnd + ":" + e.getValue());
    }
  }

  private static void host(String... argv) throws IOException, InterruptedException {
    Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(30, TimeUnit.SECONDS) || p.exitValue() != 0) {
      p.destroyForcibly();
      throw new IOException(String.join(" ", argv) + " failed: " + out);
    }
  }

  private void run(Pod p) {
    String id = id(p);
    Container c = p.getSpec().getContainers().getFirst();
    SandboxNetwork network = null;
    try {
      SandboxImage image = pull(c);
      network = SandboxNetwork.create(networks.getAndAdd(7));
      if ("true".equals(p.getMetadata().getLabels().get(KubernetesNames.EGRESS))) {
        route(network);
      }
      List<String> env = new ArrayList<>();
      c.getEnv().forEach(e -> env.add(e.getName() + "=" + e.getValue()));
      // envFrom a Secret, as a kubelet reads it.
      for (var from : c.getEnvFrom()) {
        var secret =
            client
                .secrets()
                .inNamespace(p.getMetadata().getNamespace())
                .withName(from.getSecretRef().getName())
                .get();
        secret
            .getData()
            .forEach(
                (k, v) ->
                    env.add(
                        k
                            + "="
                            + new String(Base64.getDecoder().decode(v), StandardCharsets.UTF_8)));
      }
      SandboxSpec spec =
          new SandboxSpec(p.getMetadata().getName(), image, limits(c), env).withNetwork(network);
      Sandbox sandbox = provisioner.start(spec);
      running.put(id, new Running(sandbox, network));
      // The pod's log: what the runner listener and its runners write.
      work.execute(() -> podLog(id, sandbox.init().stderr()));
      if (client
              .pods()
              .inNamespace(p.getMetadata().getNamespace())
              .withName(p.getMetadata().getName())
              .get()
          == null) {
        stop(id); // deleted while it started
        return;
      }
      String ip = network.sandboxAddress().getHostAddress();
      reportStatus(p, ip);
      log.info("pod {} runs as sandbox {} at {}", id, sandbox.id(), ip);
    } catch (Exception e) {
      log.warn("pod {} failed to start: {}", id, e.toString());
      try {
        reportStatus(p, null); // Failed, as a kubelet reports it: the reconciler replaces it
      } catch (RuntimeException again) {
        log.warn("pod {}: reporting its failure failed too: {}", id, again.toString());
      }
      if (network != null && !running.containsKey(id)) {
        network.close();
      }
    }
  }

  /**
   * A pod that runs to its end (restart policy Never): its container's command runs in a sandbox of
   * its image (exec'd into a sandbox whose init says it is ready and waits, so that the sandbox
   * outlives the command), then the termination message is read from the file the pod names, as a
   * kubelet reads it (the end of the command's stderr when the file is empty and the command
   * failed: FallbackToLogsOnError), and the pod's status says Succeeded or Failed with the exit
   * code and the message.
   */
  private void runToEnd(Pod p) {
    String id = id(p);
    Container c = p.getSpec().getContainers().getFirst();
    int exit = -1;
    String message;
    try {
      SandboxImage pulled = pull(c);
      SandboxImage idle =
          new SandboxImage(
              pulled.layers(),
              List.of("/bin/sh", "-c", "echo ready; exec sleep 100000"),
              pulled.env(),
              pulled.workingDir());
      SandboxSpec spec = new SandboxSpec(p.getMetadata().getName(), idle, limits(c), List.of());
      try (Sandbox sandbox = provisioner.start(spec)) {
        List<String> argv = new ArrayList<>(c.getCommand());
        argv.addAll(c.getArgs());
        SandboxProcess run = sandbox.exec(argv, List.of());
        run.stdin().close();
        CompletableFuture<byte[]> err =
            CompletableFuture.supplyAsync(
                () -> {
                  try {
                    return run.stderr().readAllBytes();
                  } catch (IOException e) {
                    return new byte[0];
                  }
                },
                work);
        run.stdout().transferTo(java.io.OutputStream.nullOutputStream());
        exit = run.exited().get(5, TimeUnit.MINUTES);
        String stderr = new String(err.get(1, TimeUnit.MINUTES), StandardCharsets.UTF_8);
        SandboxProcess cat = sandbox.exec(List.of("cat", c.getTerminationMessagePath()), List.of());
        cat.stdin().close();
        message = new String(cat.stdout().readAllBytes(), StandardCharsets.UTF_8);
        cat.exited().get(1, TimeUnit.MINUTES);
        if (message.isEmpty()
            && exit != 0
            && "FallbackToLogsOnError".equals(c.getTerminationMessagePolicy())) {
          message = stderr.substring(Math.max(0, stderr.length() - ImagePods.MAX_OUTPUT));
        }
        message = message.substring(0, Math.min(message.length(), ImagePods.MAX_OUTPUT));
      }
    } catch (Exception e) {
      log.warn("pod {} failed: {}", id, e.toString());
      message = e.toString();
    }
    int code = exit;
    String text = message;
    log.info("pod {} ended with exit code {}", id, code);
    client
        .pods()
        .inNamespace(p.getMetadata().getNamespace())
        .withName(p.getMetadata().getName())
        .editStatus(
            cur -> {
              cur.setStatus(
                  new PodStatusBuilder()
                      .withPhase(code == 0 ? "Succeeded" : "Failed")
                      .addNewContainerStatus()
                      .withName(c.getName())
                      .withNewState()
                      .withNewTerminated()
                      .withExitCode(code)
                      .withMessage(text)
                      .endTerminated()
                      .endState()
                      .endContainerStatus()
                      .build());
              return cur;
            });
  }

  /**
   * The pod's image as the provisioner runs it: pulled by digest into an OCI layout of its own, its
   * layers and config read from there, the pod's command as the init.
   */
  private static final int PULL_ATTEMPTS = 3;

  private SandboxImage pull(Container c) throws IOException, InterruptedException {
    String ref = c.getImage();
    Path dir = images.resolve(Integer.toHexString(ref.hashCode()));
    if (!Files.exists(dir.resolve("index.json"))) {
      List<String> argv = new ArrayList<>(List.of("skopeo", "copy", "--src-tls-verify=false"));
      if (pullLogin != null) {
        argv.add("--src-creds=" + pullLogin);
      }
      argv.addAll(List.of("docker://" + ref, "oci:" + dir));
      // A kubelet tries a failed pull again; so does this, at once: the test registry answered a
      // manifest read with 500 while two replicas pushed the same image.
      for (int attempt = 1; ; attempt++) {
        Process skopeo = new ProcessBuilder(argv).redirectErrorStream(true).start();
        String out = new String(skopeo.getInputStream().readAllBytes());
        if (skopeo.waitFor(2, TimeUnit.MINUTES) && skopeo.exitValue() == 0) {
          break;
        }
        if (attempt == PULL_ATTEMPTS) {
          throw new IOException(
              "skopeo copy of " + ref + " failed " + attempt + " times, the last: " + out);
        }
      }
    }
    JsonNode index = JSON.readTree(dir.resolve("index.json").toFile());
    JsonNode manifest =
        JSON.readTree(blob(dir, index.get("manifests").get(0).get("digest").asText()).toFile());
    JsonNode config =
        JSON.readTree(blob(dir, manifest.get("config").get("digest").asText()).toFile());
    List<SandboxImage.Layer> layers = new ArrayList<>();
    for (JsonNode l : manifest.get("layers")) {
      String digest = l.get("digest").asText();
      layers.add(new SandboxImage.Layer(digest, l.get("mediaType").asText(), blob(dir, digest)));
    }
    List<String> env = new ArrayList<>();
    config.path("config").path("Env").forEach(e -> env.add(e.asText()));
    return new SandboxImage(
        layers, c.getCommand(), env, config.path("config").path("WorkingDir").asText("/"));
  }

  private static void podLog(String pod, java.io.InputStream err) {
    try (var lines = new java.io.BufferedReader(new java.io.InputStreamReader(err))) {
      for (String line = lines.readLine(); line != null; line = lines.readLine()) {
        log.info("pod {}: {}", pod, line);
      }
    } catch (IOException e) {
      // the sandbox ended
    }
  }

  /** The container's memory and CPU limits, as the sandbox's. */
  private static Limits limits(Container c) {
    Map<String, Quantity> limits = c.getResources().getLimits();
    return new Limits(
        Quantity.getAmountInBytes(limits.get("memory")).longValue(),
        Quantity.getAmountInBytes(limits.get("cpu")).doubleValue());
  }

  private static Path blob(Path layout, String digest) {
    return layout.resolve("blobs").resolve("sha256").resolve(digest.substring("sha256:".length()));
  }

  private void stop(String id) {
    Running r = running.remove(id);
    if (r != null) {
      r.sandbox().close();
      r.network().close();
    }
  }

  @Override
  public void close() {
    if (pods != null) {
      pods.close();
    }
    work.shutdownNow();
    // Stopped sandboxes end the pod logs that are being read.
    new ArrayList<>(running.keySet()).forEach(this::stop);
    try {
      work.awaitTermination(30, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    new ArrayList<>(running.keySet()).forEach(this::stop);
    provisioner.close();
  }
}
