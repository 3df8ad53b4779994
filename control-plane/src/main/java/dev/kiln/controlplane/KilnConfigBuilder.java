package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.egress.DenyList;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Builds a {@link KilnConfig} from settings by flag name ({@link #set}, a YAML file with {@link
 * #load}) or typed setters; {@link #build()} reports every invalid setting at once.
 */
public final class KilnConfigBuilder {
  int grpcPort = 50051;
  int flightPort = 8815;
  int adminPort = 9090;
  String bindHost = "0.0.0.0";
  String advertiseHost = "127.0.0.1";
  Path dataDir = Path.of(".kiln");
  String baseImage = KilnConfig.defaultBaseImage();
  String runsc = "runsc";
  String runscPlatform = "ptrace";
  long sandboxMemoryBytes = 512L << 20;
  double sandboxCpus = 1.0;
  int runnersPerSandbox = 0;
  Duration batchTimeout = Duration.ofSeconds(300);
  Duration applyWait = Duration.ofSeconds(3);
  Duration readyWait = Duration.ofSeconds(180);
  Map<String, String> runtimes = new java.util.TreeMap<>();
  List<String> workerSizes = new ArrayList<>();
  Duration autoSuspend = Duration.ofMinutes(10);
  Path udfEnv;
  int maxSandboxes;
  long maxSandboxMemoryBytes;
  Duration gcAfter = Duration.ofHours(24);
  long diskMax;
  Duration scaleDownAfter = Duration.ofSeconds(60);
  int warmPool = 2;
  int zygotes = 2;
  List<String> indexUrls = new ArrayList<>(List.of("https://pypi.org/simple/"));
  boolean indexUrlsFromDefault = true;
  String indexUsername;
  String indexPassword;
  long cacheMemoryBytes = 256L << 20;
  long cacheLocalMaxBytes = 20L << 30;
  String s3Bucket;
  String s3Prefix = "kiln/";
  String s3Endpoint;
  String s3Region = "us-east-1";
  boolean s3PathStyle;
  String registry;
  boolean registryInsecure;
  String registryUsername;
  Path registryPasswordFile;
  boolean kubernetes;
  Path kubeconfig;
  String kubernetesNamespace = "kiln";
  Path egressPolicy;

  /** The --egress-deny values given (none: the defaults). */
  List<String> egressDeny = new ArrayList<>();

  Path egressHosts;

  public KilnConfigBuilder grpcPort(int v) {
    grpcPort = v;
    return this;
  }

  public KilnConfigBuilder flightPort(int v) {
    flightPort = v;
    return this;
  }

  public KilnConfigBuilder adminPort(int v) {
    adminPort = v;
    return this;
  }

  public KilnConfigBuilder bindHost(String v) {
    bindHost = v;
    return this;
  }

  public KilnConfigBuilder advertiseHost(String v) {
    advertiseHost = v;
    return this;
  }

  public KilnConfigBuilder dataDir(Path v) {
    dataDir = v;
    return this;
  }

  public KilnConfigBuilder baseImage(String v) {
    baseImage = v;
    return this;
  }

  public KilnConfigBuilder runsc(String v) {
    runsc = v;
    return this;
  }

  public KilnConfigBuilder runscPlatform(String v) {
    runscPlatform = v;
    return this;
  }

  public KilnConfigBuilder sandboxMemoryBytes(long v) {
    sandboxMemoryBytes = v;
    return this;
  }

  public KilnConfigBuilder sandboxCpus(double v) {
    sandboxCpus = v;
    return this;
  }

  public KilnConfigBuilder runnersPerSandbox(int v) {
    runnersPerSandbox = v;
    return this;
  }

  public KilnConfigBuilder batchTimeout(Duration v) {
    batchTimeout = v;
    return this;
  }

  public KilnConfigBuilder applyWait(Duration v) {
    applyWait = v;
    return this;
  }

  public KilnConfigBuilder readyWait(Duration v) {
    readyWait = v;
    return this;
  }

  /** Maps a Python {@code major.minor} to a base image. */
  public KilnConfigBuilder runtime(String pythonMinor, String image) {
    runtimes.put(pythonMinor, image);
    return this;
  }

  /** Replaces the package indexes (the default is PyPI). */
  public KilnConfigBuilder indexUrls(List<String> urls) {
    indexUrls = new ArrayList<>(urls);
    indexUrlsFromDefault = false;
    return this;
  }

  public KilnConfigBuilder cacheMemoryBytes(long v) {
    cacheMemoryBytes = v;
    return this;
  }

  public KilnConfigBuilder cacheLocalMaxBytes(long v) {
    cacheLocalMaxBytes = v;
    return this;
  }

  /** Turns on the shared remote cache tier (any S3-compatible server). */
  public KilnConfigBuilder s3(String bucket, String endpoint, String region, boolean pathStyle) {
    s3Bucket = bucket;
    s3Endpoint = endpoint;
    s3Region = region;
    s3PathStyle = pathStyle;
    return this;
  }

  /** Pushes every UDF image to {@code repository} ({@code HOST[:PORT]/REPOSITORY}) once built. */
  public KilnConfigBuilder registry(String repository, boolean insecure) {
    registry = repository;
    registryInsecure = insecure;
    return this;
  }

  /**
   * Runs UDF sandboxes as pods of the cluster {@code kubeconfig} names (null: found as kubectl
   * finds it), with Kiln's resources in {@code namespace}.
   */
  public KilnConfigBuilder kubernetes(Path kubeconfig, String namespace) {
    kubernetes = true;
    this.kubeconfig = kubeconfig;
    kubernetesNamespace = namespace;
    return this;
  }

  /**
   * Applies a YAML (or JSON) config file whose keys are the long flag names. Unknown keys are
   * errors, so a typo does not silently fall back to a default.
   */
  public KilnConfigBuilder load(Path file) throws IOException, KilnException {
    if (!Files.isRegularFile(file)) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION,
          "config file " + file + " does not exist or is not a file");
    }
    JsonNode root = new ObjectMapper(new YAMLFactory()).readTree(file.toFile());
    if (root == null || root.isMissingNode() || root.isNull()) {
      return this;
    }
    if (!root.isObject()) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION,
          "config file " + file + " must be a mapping of flag: value");
    }
    List<String> errors = new ArrayList<>();
    for (Iterator<Map.Entry<String, JsonNode>> it = root.fields(); it.hasNext(); ) {
      Map.Entry<String, JsonNode> e = it.next();
      try {
        if (e.getValue().isArray()) {
          for (JsonNode item : e.getValue()) {
            set(e.getKey(), item.asText());
          }
        } else if (e.getValue().isObject() && e.getKey().equals("runtime")) {
          e.getValue().fields().forEachRemaining(r -> runtime(r.getKey(), r.getValue().asText()));
        } else {
          set(e.getKey(), e.getValue().asText());
        }
      } catch (IllegalArgumentException ex) {
        errors.add(ex.getMessage());
      }
    }
    if (!errors.isEmpty()) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION,
          "config file " + file + ": " + String.join("; ", errors));
    }
    return this;
  }

  /** Sets one option by its long flag name (without dashes). */
  public KilnConfigBuilder set(String key, String value) {
    switch (key) {
      case "grpc-port" -> grpcPort = ConfigValues.port(key, value);
      case "flight-port" -> flightPort = ConfigValues.port(key, value);
      case "admin-port" -> adminPort = ConfigValues.port(key, value);
      case "bind-host" -> bindHost = value;
      case "advertise-host" -> advertiseHost = value;
      case "data-dir" -> dataDir = Path.of(value);
      case "base-image" -> baseImage = value;
      case "runsc" -> runsc = value;
      case "runsc-platform" -> runscPlatform = value;
      case "sandbox-memory" -> sandboxMemoryBytes = ConfigValues.size(key, value);
      case "sandbox-cpus" -> sandboxCpus = ConfigValues.number(key, value);
      case "runners-per-sandbox" -> runnersPerSandbox = (int) ConfigValues.number(key, value);
      case "batch-timeout" -> batchTimeout = ConfigValues.duration(key, value);
      case "apply-wait" -> applyWait = ConfigValues.duration(key, value);
      case "ready-wait" -> readyWait = ConfigValues.duration(key, value);
      case "runtime" -> {
        int eq = value.indexOf('=');
        if (eq <= 0 || !value.substring(0, eq).trim().matches("3\\.\\d{1,2}")) {
          throw new IllegalArgumentException(
              "runtime must look like 3.12=IMAGE (a Python major.minor, '=', a base image), got '"
                  + value
                  + "'");
        }
        runtimes.put(value.substring(0, eq).trim(), value.substring(eq + 1).trim());
      }
      case "index-url" -> {
        if (indexUrlsFromDefault) {
          indexUrls.clear();
          indexUrlsFromDefault = false;
        }
        indexUrls.add(value.trim());
      }
      case "index-username" -> indexUsername = value;
      case "index-password" -> indexPassword = value;
      case "cache-memory" -> cacheMemoryBytes = ConfigValues.size(key, value);
      case "cache-local-max" -> cacheLocalMaxBytes = ConfigValues.size(key, value);
      case "s3-bucket" -> s3Bucket = value;
      case "s3-prefix" -> s3Prefix = value;
      case "s3-endpoint" -> s3Endpoint = value;
      case "s3-region" -> s3Region = value;
      case "s3-path-style" -> s3PathStyle = Boolean.parseBoolean(value.trim());
      case "worker-size" -> workerSizes.add(value.trim());
      case "auto-suspend" -> autoSuspend = ConfigValues.duration(key, value);
      case "udf-env" -> udfEnv = Path.of(value);
      case "max-sandboxes" -> maxSandboxes = (int) ConfigValues.number(key, value);
      case "max-sandbox-memory" -> maxSandboxMemoryBytes = ConfigValues.size(key, value);
      case "gc-after" -> gcAfter = ConfigValues.duration(key, value);
      case "disk-max" -> diskMax = ConfigValues.size(key, value);
      case "scale-down-after" -> scaleDownAfter = ConfigValues.duration(key, value);
      case "warm-pool" -> warmPool = (int) ConfigValues.number(key, value);
      case "zygotes" -> zygotes = (int) ConfigValues.number(key, value);
      case "registry" -> registry = value.trim();
      case "registry-insecure" -> registryInsecure = Boolean.parseBoolean(value.trim());
      case "registry-username" -> registryUsername = value.trim();
      case "registry-password-file" -> registryPasswordFile = Path.of(value.trim());
      case "kubernetes" -> kubernetes = Boolean.parseBoolean(value.trim());
      case "kubeconfig" -> kubeconfig = Path.of(value.trim());
      case "kubernetes-namespace" -> kubernetesNamespace = value.trim();
      case "egress-policy" -> egressPolicy = Path.of(value.trim());
      case "egress-deny" -> egressDeny.add(value);
      case "egress-hosts" -> egressHosts = Path.of(value.trim());
      default ->
          throw new IllegalArgumentException(
              "unknown setting '"
                  + key
                  + "' (known: grpc-port, flight-port, admin-port, bind-host, advertise-host,"
                  + " data-dir, base-image, runsc, runsc-platform, sandbox-memory, sandbox-cpus,"
                  + " runners-per-sandbox, batch-timeout, apply-wait, ready-wait, runtime,"
                  + " index-url, index-username, index-password, cache-memory, cache-local-max,"
                  + " s3-bucket, s3-prefix, s3-endpoint, s3-region, s3-path-style, worker-size,"
                  + " auto-suspend, udf-env, max-sandboxes, max-sandbox-memory, gc-after,"
                  + " disk-max, scale-down-after, warm-pool, zygotes, registry,"
                  + " registry-insecure, registry-username, registry-password-file, kubernetes,"
                  + " kubeconfig, kubernetes-namespace, egress-policy, egress-deny, egress-hosts)");
    }
    return this;
  }

  public KilnConfig build() throws KilnException {
    List<String> errors = new ArrayList<>();
    checkPort(errors, "grpc-port", grpcPort);
    checkPort(errors, "flight-port", flightPort);
    checkPort(errors, "admin-port", adminPort);
    if (bindHost == null || bindHost.isBlank()) {
      errors.add("bind-host is empty");
    }
    if (advertiseHost == null || advertiseHost.isBlank()) {
      errors.add("advertise-host is empty");
    }
    if (baseImage == null || baseImage.isBlank()) {
      errors.add("base-image is empty; run bin/build-base-image or pass --base-image");
    }
    if (sandboxMemoryBytes < 64L << 20) {
      errors.add("sandbox-memory must be at least 64MiB");
    }
    if (!(sandboxCpus > 0)) {
      errors.add("sandbox-cpus must be positive");
    }
    if (runnersPerSandbox < 0) {
      errors.add("runners-per-sandbox must be 0 (one per sandbox CPU) or more");
    }
    for (String url : indexUrls) {
      if (!url.matches("(?i)(https?|file)://.+")) {
        errors.add("index-url '" + url + "' must be an http://, https:// or file:// URL");
      }
    }
    if (cacheMemoryBytes < 0 || cacheLocalMaxBytes < (64L << 20)) {
      errors.add("cache-local-max must be at least 64MiB and cache-memory not negative");
    }
    if (batchTimeout.isNegative() || batchTimeout.isZero()) {
      errors.add("batch-timeout must be positive");
    }
    if (applyWait.isNegative() || applyWait.compareTo(Duration.ofSeconds(4)) > 0) {
      errors.add("apply-wait must be between 0s and 4s (Databend's deadline is 5s)");
    }
    long budget =
        maxSandboxMemoryBytes > 0
            ? maxSandboxMemoryBytes
            : ConfigValues.defaultSandboxMemory(KilnConfig.DEFAULT_SANDBOX_MEMORY_SHARE);
    if (maxSandboxes < 0) {
      errors.add("max-sandboxes must be 0 (no limit by count) or more");
    }
    if (warmPool < 0) {
      errors.add("warm-pool must be 0 (no warm sandboxes) or more");
    }
    if (zygotes < 0) {
      errors.add("zygotes must be 0 (no package sets kept ready) or more");
    }
    if (budget < sandboxMemoryBytes) {
      errors.add(
          "max-sandbox-memory ("
              + (budget >> 20)
              + "MiB) must hold at least one sandbox of --sandbox-memory ("
              + (sandboxMemoryBytes >> 20)
              + "MiB)");
    }
    if (registry != null && !registry.matches(REGISTRY)) {
      errors.add(
          "registry '"
              + registry
              + "' must be HOST[:PORT]/REPOSITORY (lower-case repository, no tag or digest),"
              + " e.g. localhost:5000/kiln");
    }
    if ((registryUsername == null) != (registryPasswordFile == null)) {
      errors.add(
          "registry-username and registry-password-file go together: give both, or neither to"
              + " use the login docker login left in the Docker config");
    } else if (registryPasswordFile != null && !Files.isReadable(registryPasswordFile)) {
      errors.add("registry-password-file " + registryPasswordFile + " is not a readable file");
    }
    if (kubernetes && registry == null) {
      errors.add(
          "kubernetes needs a registry its nodes pull UDF images from: set --registry"
              + " HOST[:PORT]/REPOSITORY");
    }
    if (kubernetesNamespace == null
        || !kubernetesNamespace.matches("[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")) {
      errors.add("kubernetes-namespace '" + kubernetesNamespace + "' is not a namespace name");
    }
    try {
      WorkerSizes.of(workerSizes);
    } catch (KilnException e) {
      errors.add(e.getMessage());
    }
    try {
      DenyList.parse(DenyList.cidrs(egressDeny));
    } catch (KilnException e) {
      errors.add(e.getMessage());
    }
    if (egressHosts != null && !Files.isReadable(egressHosts)) {
      errors.add("egress-hosts " + egressHosts + " is not a readable file");
    }
    if (!errors.isEmpty()) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION, "invalid configuration: " + String.join("; ", errors));
    }
    return new KilnConfig(
        grpcPort,
        flightPort,
        adminPort,
        bindHost,
        advertiseHost,
        dataDir.toAbsolutePath(),
        baseImage,
        runsc,
        runscPlatform,
        sandboxMemoryBytes,
        sandboxCpus,
        runnersPerSandbox,
        batchTimeout,
        applyWait,
        readyWait,
        runtimes,
        indexUrls,
        indexUsername,
        indexPassword,
        cacheMemoryBytes,
        cacheLocalMaxBytes,
        s3Bucket,
        s3Prefix,
        s3Endpoint,
        s3Region,
        s3PathStyle,
        workerSizes,
        autoSuspend,
        udfEnv == null ? null : udfEnv.toAbsolutePath(),
        maxSandboxes,
        budget,
        gcAfter,
        diskMax,
        scaleDownAfter,
        warmPool,
        zygotes,
        registry,
        registryInsecure || (registry != null && registry.matches(LOCAL_REGISTRY)),
        registryUsername,
        registryPasswordFile == null ? null : registryPasswordFile.toAbsolutePath(),
        kubernetes,
        kubeconfig == null ? null : kubeconfig.toAbsolutePath(),
        kubernetesNamespace,
        egressPolicy == null ? null : egressPolicy.toAbsolutePath(),
        DenyList.cidrs(egressDeny),
        egressHosts == null ? null : egressHosts.toAbsolutePath());
  }

  private static final String REGISTRY =
      "[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)+";
  private static final String LOCAL_REGISTRY = "(localhost|127\\.[0-9.]+)(:[0-9]+)?/.*";

  private static void checkPort(List<String> errors, String name, int port) {
    if (port < 0 || port > 65535) {
      errors.add(name + " must be between 0 and 65535, got " + port);
    }
  }
}
