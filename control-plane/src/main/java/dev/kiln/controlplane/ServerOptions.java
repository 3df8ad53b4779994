package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.UnaryOperator;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * The flags that configure a server ({@code kiln serve}'s, and {@code kiln prewarm}'s, which runs
 * the same pipeline on the same data directory and caches), read into a {@link KilnConfig}.
 */
final class ServerOptions {

  @Option(
      names = "--config",
      paramLabel = "FILE",
      description = "YAML file whose keys are these flags' long names (e.g. grpc-port: 50051).")
  Path configFile;

  @Option(
      names = "--grpc-port",
      paramLabel = "PORT",
      description = "Provisioning API port (default 50051).")
  String grpcPort;

  @Option(
      names = "--flight-port",
      paramLabel = "PORT",
      description = "Arrow Flight endpoint port (default 8815).")
  String flightPort;

  @Option(
      names = "--admin-port",
      paramLabel = "PORT",
      description = "Port of /healthz and /metrics (default 9090).")
  String adminPort;

  @Option(
      names = "--data-dir",
      paramLabel = "DIR",
      description = "Data directory (default ./.kiln).")
  String dataDir;

  @Option(
      names = "--base-image",
      paramLabel = "IMAGE",
      description =
          "Python base image: an image archive (bin/build-base-image writes one) or a"
              + " registry reference such as python:3.12-slim.")
  String baseImage;

  @Option(
      names = "--bind-host",
      paramLabel = "HOST",
      description = "Address to listen on (default 0.0.0.0).")
  String bindHost;

  @Option(
      names = "--advertise-host",
      paramLabel = "HOST",
      description = "Host name put in the endpoint given to Databend (default 127.0.0.1).")
  String advertiseHost;

  @Option(
      names = "--sandbox-memory",
      paramLabel = "SIZE",
      description = "Memory limit of each sandbox (default 512MiB).")
  String sandboxMemory;

  @Option(
      names = "--sandbox-cpus",
      paramLabel = "N",
      description = "CPU limit of each sandbox in cores (default 1).")
  String sandboxCpus;

  @Option(
      names = "--batch-timeout",
      paramLabel = "DURATION",
      description = "Longest a UDF may take on one batch (default 300s).")
  String batchTimeout;

  @Option(names = "--runsc", paramLabel = "PATH", description = "The runsc binary (default runsc).")
  String runsc;

  @Option(
      names = "--runsc-platform",
      paramLabel = "NAME",
      description = "gVisor platform: ptrace (default), systrap or kvm.")
  String runscPlatform;

  @Option(
      names = "--runners-per-sandbox",
      paramLabel = "N",
      description = "Python runner processes per sandbox (default: one per sandbox CPU).")
  String runnersPerSandbox;

  @Option(
      names = "--runtime",
      paramLabel = "X.Y=IMAGE",
      description =
          "Base image for UDFs whose runtime_version is Python X.Y (repeatable). With"
              + " none, --base-image serves every version.")
  List<String> runtimes = new ArrayList<>();

  @Option(
      names = "--worker-size",
      paramLabel = "NAME=CPUS,MEMORY,RUNNERS",
      description =
          "A worker size (repeatable; adds to or replaces the built-in xsmall=0.5,256MiB,1"
              + " small=1,512MiB,1 medium=2,1GiB,2 large=4,2GiB,4 xlarge=8,4GiB,8).")
  List<String> workerSizes = new ArrayList<>();

  @Option(
      names = "--auto-suspend",
      paramLabel = "DURATION",
      description =
          "How long a UDF may go without calls before its sandbox stops: a worker's auto_suspend"
              + " when CREATE WORKER names none, and every UDF without a worker (default 10m;"
              + " 0s = never). The next call starts it again.")
  String autoSuspend;

  @Option(
      names = "--max-sandboxes",
      paramLabel = "N",
      description =
          "Sandboxes that may run at once on this node (default 0: only --max-sandbox-memory"
              + " limits them). A new one first stops idle ones, least recently used first.")
  String maxSandboxes;

  @Option(
      names = "--max-sandbox-memory",
      paramLabel = "SIZE",
      description =
          "Memory all sandboxes may hold together, gVisor's own included (default: 75%% of the"
              + " host's memory). A new one first stops idle ones, least recently used first.")
  String maxSandboxMemory;

  @Option(
      names = "--gc-after",
      paramLabel = "DURATION",
      description =
          "UDF images, extracted layers and build caches nobody used this long are removed (default"
              + " 24h; never what a running UDF uses). A collected UDF is built again on its next"
              + " call.")
  String gcAfter;

  @Option(
      names = "--disk-max",
      paramLabel = "SIZE",
      description =
          "Budget of the data directory: over it, what is unused goes least recently used first"
              + " (default 0: --gc-after alone).")
  String diskMax;

  @Option(
      names = "--scale-down-after",
      paramLabel = "DURATION",
      description =
          "A sandbox added to a busy worker's UDF (up to its max_cluster_count) stops after this"
              + " long without calls (default 60s), never below its min_cluster_count.")
  String scaleDownAfter;

  @Option(
      names = "--warm-pool",
      paramLabel = "N",
      description =
          "Sandboxes of the server's size kept started ahead of need, runners warm, for new UDFs"
              + " without packages (default 2; 0 = none). Refilled in the background, inside the"
              + " node budget, and stopped first when a UDF needs their room.")
  String warmPool;

  @Option(
      names = "--zygotes",
      paramLabel = "N",
      description =
          "Package sets (the N most recently used) that each get a sandbox kept ready with the"
              + " packages imported, for the next new UDF with that set (default 2; 0 = none)."
              + " Refilled in the background, inside the node budget, and stopped first when a UDF"
              + " needs their room.")
  String zygotes;

  @Option(
      names = "--udf-env",
      paramLabel = "FILE",
      description =
          "Environment variables per tenant and UDF (TOML: [udf_env] then \"tenant.udf\" ="
              + " { KEY = \"value\" }), read again when it changes.")
  String udfEnv;

  @Option(
      names = "--egress-policy",
      paramLabel = "FILE",
      description =
          "Hosts the UDFs may connect to, per tenant or UDF (TOML: [udf_egress] then \"tenant\" or"
              + " \"tenant.udf\" = [\"*.amazonaws.com\", \"api.example.com:443\"]), on top of a"
              + " worker's egress option; read again when it changes. Without either a UDF has no"
              + " network.")
  String egressPolicy;

  @Mixin EgressOptions egress = new EgressOptions();

  @Option(
      names = "--index-url",
      paramLabel = "URL",
      description =
          "Python package index (PEP 503/691; http(s):// or file://), repeatable, tried in"
              + " order (default https://pypi.org/simple/).")
  List<String> indexUrls = new ArrayList<>();

  @Option(
      names = "--cache-memory",
      paramLabel = "SIZE",
      description = "In-memory blob cache (default 256MiB).")
  String cacheMemory;

  @Option(
      names = "--cache-local-max",
      paramLabel = "SIZE",
      description = "On-disk blob cache bound (default 20GiB).")
  String cacheLocalMax;

  @Option(
      names = "--s3-bucket",
      paramLabel = "BUCKET",
      description =
          "Shared remote cache tier in this S3 bucket (credentials from the usual AWS"
              + " environment variables or the config file).")
  String s3Bucket;

  @Option(
      names = "--s3-endpoint",
      paramLabel = "URL",
      description = "S3-compatible endpoint (MinIO, GCS https://storage.googleapis.com, ...).")
  String s3Endpoint;

  @Option(names = "--s3-region", paramLabel = "REGION", description = "Bucket region.")
  String s3Region;

  @Option(
      names = "--s3-path-style",
      paramLabel = "BOOL",
      description = "Path-style S3 addressing (needed by most non-AWS servers).")
  String s3PathStyle;

  @Option(
      names = "--registry",
      paramLabel = "HOST[:PORT]/REPOSITORY",
      description =
          "Push every UDF image there once built (only the blobs it lacks), for Kubernetes"
              + " nodes to pull by digest. Kiln logs in as docker login left it in the Docker"
              + " config ($DOCKER_CONFIG/config.json or ~/.docker/config.json), or as"
              + " --registry-username. Default: none.")
  String registry;

  @Option(
      names = "--registry-username",
      paramLabel = "USER",
      description = "Log in to --registry as USER, with the password in --registry-password-file.")
  String registryUsername;

  @Option(
      names = "--registry-password-file",
      paramLabel = "FILE",
      description = "The file holding --registry-username's password.")
  String registryPasswordFile;

  @Option(
      names = "--kubernetes",
      arity = "0..1",
      fallbackValue = "true",
      paramLabel = "BOOL",
      description =
          "Run UDF sandboxes as pods of a Kubernetes cluster (gVisor RuntimeClass) instead of"
              + " local gVisor sandboxes; needs --registry. Default: false.")
  String kubernetes;

  @Option(
      names = "--kubeconfig",
      paramLabel = "FILE",
      description =
          "The cluster's kubeconfig (default: as kubectl finds it; in a pod, its service"
              + " account).")
  String kubeconfig;

  @Option(
      names = "--kubernetes-namespace",
      paramLabel = "NAMESPACE",
      description = "Kiln's namespace: its UdfWorker resources and leader lease (default kiln).")
  String kubernetesNamespace;

  @Option(
      names = "--registry-insecure",
      paramLabel = "BOOL",
      description = "Allow plain http to the registry (always allowed on localhost).")
  String registryInsecure;

  /**
   * The configuration these flags give, as {@code adjust} changes it; null after saying on stderr,
   * as {@code command}, what is wrong with a flag or the {@code --config} file.
   */
  KilnConfig configOrExplain(String command, UnaryOperator<KilnConfigBuilder> adjust) {
    try {
      return adjust.apply(builder()).build();
    } catch (IllegalArgumentException | KilnException e) {
      System.err.println(command + ": " + e.getMessage());
    } catch (IOException e) {
      System.err.println(command + ": cannot read the --config file: " + e.getMessage());
    }
    return null;
  }

  /**
   * The configuration these flags (and {@code --config}'s file under them) give.
   *
   * @throws IllegalArgumentException or KilnException for a flag or file that is not valid
   * @throws IOException when the {@code --config} file cannot be read
   */
  KilnConfigBuilder builder() throws KilnException, IOException {
    KilnConfigBuilder builder = KilnConfig.builder();
    if (configFile != null) {
      builder.load(configFile);
    }
    Map<String, String> flags = new LinkedHashMap<>();
    flags.put("grpc-port", grpcPort);
    flags.put("flight-port", flightPort);
    flags.put("admin-port", adminPort);
    flags.put("data-dir", dataDir);
    flags.put("base-image", baseImage);
    flags.put("bind-host", bindHost);
    flags.put("advertise-host", advertiseHost);
    flags.put("sandbox-memory", sandboxMemory);
    flags.put("sandbox-cpus", sandboxCpus);
    flags.put("batch-timeout", batchTimeout);
    flags.put("runsc", runsc);
    flags.put("runsc-platform", runscPlatform);
    flags.put("runners-per-sandbox", runnersPerSandbox);
    flags.put("cache-memory", cacheMemory);
    flags.put("cache-local-max", cacheLocalMax);
    flags.put("s3-bucket", s3Bucket);
    flags.put("s3-endpoint", s3Endpoint);
    flags.put("s3-region", s3Region);
    flags.put("s3-path-style", s3PathStyle);
    flags.put("registry", registry);
    flags.put("registry-insecure", registryInsecure);
    flags.put("registry-username", registryUsername);
    flags.put("registry-password-file", registryPasswordFile);
    flags.put("kubernetes", kubernetes);
    flags.put("kubeconfig", kubeconfig);
    flags.put("kubernetes-namespace", kubernetesNamespace);
    flags.put("auto-suspend", autoSuspend);
    flags.put("udf-env", udfEnv);
    flags.put("egress-policy", egressPolicy);
    flags.put("egress-hosts", egress.hosts);
    flags.put("max-sandboxes", maxSandboxes);
    flags.put("max-sandbox-memory", maxSandboxMemory);
    flags.put("gc-after", gcAfter);
    flags.put("disk-max", diskMax);
    flags.put("scale-down-after", scaleDownAfter);
    flags.put("warm-pool", warmPool);
    flags.put("zygotes", zygotes);
    flags.forEach(
        (k, v) -> {
          if (v != null) {
            builder.set(k, v);
          }
        });
    runtimes.forEach(r -> builder.set("runtime", r));
    workerSizes.forEach(w -> builder.set("worker-size", w));
    egress.deny.forEach(d -> builder.set("egress-deny", d));
    if (!indexUrls.isEmpty()) {
      builder.indexUrls(indexUrls);
    }
    return builder;
  }
}
