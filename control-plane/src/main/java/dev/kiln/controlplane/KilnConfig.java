package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

/**
 * Everything {@code kiln serve} can be told. Defaults run the whole system on one machine with no
 * configuration; a YAML file (keys as the long flag names, e.g. {@code grpc-port: 50051}) and then
 * the command-line flags override them.
 *
 * @param grpcPort port of the provisioning API ({@code udfproto.UdfService}); 0 = any free port
 * @param flightPort port of the Arrow Flight endpoint Databend calls; 0 = any free port
 * @param adminPort port of {@code /healthz} and {@code /metrics}; 0 = any free port
 * @param bindHost address the servers listen on
 * @param advertiseHost host name put in the endpoint returned to Databend
 * @param dataDir where images, sandboxes and state live
 * @param baseImage the Python base image: an archive path or a registry reference
 * @param runsc the runsc binary
 * @param runscPlatform gVisor platform ({@code ptrace} works everywhere; {@code systrap}/{@code
 *     kvm} are faster where available)
 * @param sandboxMemoryBytes memory limit of each sandbox
 * @param sandboxCpus CPU limit of each sandbox, in cores
 * @param runnersPerSandbox Python runner processes per sandbox
 * @param batchTimeout longest a UDF may take on one batch
 * @param applyWait how long a cold ApplyUdfResource waits for the sandbox before answering, so that
 *     errors in the UDF code come back on the RPC (never beyond the call's deadline)
 * @param readyWait how long a Flight call waits for a sandbox that is still starting
 * @param runtimes base image per Python {@code major.minor} ({@code runtime_version} of the spec);
 *     empty = {@code baseImage} serves every version
 * @param indexUrls package indexes (PEP 503/691), tried in order; a package comes from the first
 *     index that has it
 * @param indexUsername basic-auth user for the indexes (also possible in the URL), or null
 * @param indexPassword basic-auth password for the indexes, or null
 * @param cacheMemoryBytes bound of the in-memory blob cache
 * @param cacheLocalMaxBytes bound of the on-disk blob cache (evicts least recently used)
 * @param s3Bucket bucket of the shared remote cache tier, or null for none
 * @param s3Prefix key prefix in that bucket
 * @param s3Endpoint S3-compatible endpoint (MinIO, GCS interop, …), or null for AWS
 * @param s3Region region of the bucket
 * @param s3PathStyle path-style addressing (most non-AWS servers need it)
 * @param workerSizes worker sizes added to or replacing the built-in table, each {@code
 *     NAME=CPUS,MEMORY,RUNNERS}
 * @param autoSuspend how long a UDF may go without calls before its sandbox stops: a worker's
 *     {@code auto_suspend} when it names none, and every UDF asked for without a worker ({@link
 *     Duration#ZERO} = never)
 * @param udfEnv a TOML file of per-tenant, per-UDF environment variables, or null
 * @param maxSandboxes sandboxes that may run at once on this node (0: only memory limits them)
 * @param maxSandboxMemoryBytes memory all sandboxes may hold together, gVisor's own included
 *     (default: {@link #DEFAULT_SANDBOX_MEMORY_SHARE} of the host's memory)
 * @param gcAfter images, layers and caches unused this long are collected
 * @param diskMax the data directory's budget in bytes (0: none beyond {@code gcAfter})
 * @param scaleDownAfter a sandbox added to a busy worker's UDF stops after this long without calls
 * @param warmPool sandboxes of the server's size kept started ahead of need, runners warm, for new
 *     UDFs without packages (0: none)
 * @param zygotes package sets (the most recently used) that each get a sandbox kept ready, runners
 *     having imported the packages, for the next new UDF with that set (0: none)
 * @param registry where UDF images are pushed once built ({@code HOST[:PORT]/REPOSITORY}), or null
 *     for nowhere (the local layout serves the local provisioner)
 * @param registryInsecure whether that registry may be spoken to over plain http (always so for a
 *     registry on localhost)
 */
public record KilnConfig(
    int grpcPort,
    int flightPort,
    int adminPort,
    String bindHost,
    String advertiseHost,
    Path dataDir,
    String baseImage,
    String runsc,
    String runscPlatform,
    long sandboxMemoryBytes,
    double sandboxCpus,
    int runnersPerSandbox,
    Duration batchTimeout,
    Duration applyWait,
    Duration readyWait,
    Map<String, String> runtimes,
    List<String> indexUrls,
    String indexUsername,
    String indexPassword,
    long cacheMemoryBytes,
    long cacheLocalMaxBytes,
    String s3Bucket,
    String s3Prefix,
    String s3Endpoint,
    String s3Region,
    boolean s3PathStyle,
    List<String> workerSizes,
    Duration autoSuspend,
    Path udfEnv,
    int maxSandboxes,
    long maxSandboxMemoryBytes,
    Duration gcAfter,
    long diskMax,
    Duration scaleDownAfter,
    int warmPool,
    int zygotes,
    String registry,
    boolean registryInsecure) {

  /** The share of the host's memory sandboxes may hold when --max-sandbox-memory is not set. */
  public static final double DEFAULT_SANDBOX_MEMORY_SHARE = 0.75;

  public KilnConfig {
    runtimes = Map.copyOf(runtimes);
    indexUrls = List.copyOf(indexUrls);
    workerSizes = List.copyOf(workerSizes);
  }

  /** Runner processes per sandbox: the configured number, or one per CPU of the sandbox. */
  public int effectiveRunnersPerSandbox() {
    return runnersPerSandbox > 0 ? runnersPerSandbox : (int) Math.max(1, Math.ceil(sandboxCpus));
  }

  /** The base image {@code bin/build-base-image} writes by default. */
  public static String defaultBaseImage() {
    return cacheDir() + "/base/debian-bookworm-python3.tar";
  }

  /**
   * Kiln's cache outside the repository, as {@code bin/kiln} finds it: {@code $KILN_CACHE_DIR},
   * else {@code ${XDG_CACHE_HOME:-$HOME/.cache}/kiln}.
   */
  public static String cacheDir() {
    String cache = System.getenv("KILN_CACHE_DIR");
    if (cache != null && !cache.isEmpty()) {
      return cache;
    }
    String xdg = System.getenv("XDG_CACHE_HOME");
    return (xdg == null || xdg.isEmpty() ? System.getProperty("user.home") + "/.cache" : xdg)
        + "/kiln";
  }

  public static Builder builder() {
    return new Builder();
  }

  public Builder toBuilder() {
    Builder b = new Builder();
    b.grpcPort = grpcPort;
    b.flightPort = flightPort;
    b.adminPort = adminPort;
    b.bindHost = bindHost;
    b.advertiseHost = advertiseHost;
    b.dataDir = dataDir;
    b.baseImage = baseImage;
    b.runsc = runsc;
    b.runscPlatform = runscPlatform;
    b.sandboxMemoryBytes = sandboxMemoryBytes;
    b.sandboxCpus = sandboxCpus;
    b.runnersPerSandbox = runnersPerSandbox;
    b.batchTimeout = batchTimeout;
    b.applyWait = applyWait;
    b.readyWait = readyWait;
    b.runtimes = new java.util.TreeMap<>(runtimes);
    b.indexUrls = new ArrayList<>(indexUrls);
    b.indexUsername = indexUsername;
    b.indexPassword = indexPassword;
    b.cacheMemoryBytes = cacheMemoryBytes;
    b.cacheLocalMaxBytes = cacheLocalMaxBytes;
    b.s3Bucket = s3Bucket;
    b.s3Prefix = s3Prefix;
    b.s3Endpoint = s3Endpoint;
    b.s3Region = s3Region;
    b.s3PathStyle = s3PathStyle;
    b.workerSizes = new ArrayList<>(workerSizes);
    b.autoSuspend = autoSuspend;
    b.udfEnv = udfEnv;
    b.maxSandboxes = maxSandboxes;
    b.maxSandboxMemoryBytes = maxSandboxMemoryBytes;
    b.gcAfter = gcAfter;
    b.diskMax = diskMax;
    b.scaleDownAfter = scaleDownAfter;
    b.warmPool = warmPool;
    b.zygotes = zygotes;
    b.registry = registry;
    b.registryInsecure = registryInsecure;
    return b;
  }

  /** Builds a {@link KilnConfig}; {@link #build()} reports every invalid setting at once. */
  public static final class Builder {
    int grpcPort = 50051;
    int flightPort = 8815;
    int adminPort = 9090;
    String bindHost = "0.0.0.0";
    String advertiseHost = "127.0.0.1";
    Path dataDir = Path.of(".kiln");
    String baseImage = defaultBaseImage();
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

    public Builder grpcPort(int v) {
      grpcPort = v;
      return this;
    }

    public Builder flightPort(int v) {
      flightPort = v;
      return this;
    }

    public Builder adminPort(int v) {
      adminPort = v;
      return this;
    }

    public Builder bindHost(String v) {
      bindHost = v;
      return this;
    }

    public Builder advertiseHost(String v) {
      advertiseHost = v;
      return this;
    }

    public Builder dataDir(Path v) {
      dataDir = v;
      return this;
    }

    public Builder baseImage(String v) {
      baseImage = v;
      return this;
    }

    public Builder runsc(String v) {
      runsc = v;
      return this;
    }

    public Builder runscPlatform(String v) {
      runscPlatform = v;
      return this;
    }

    public Builder sandboxMemoryBytes(long v) {
      sandboxMemoryBytes = v;
      return this;
    }

    public Builder sandboxCpus(double v) {
      sandboxCpus = v;
      return this;
    }

    public Builder runnersPerSandbox(int v) {
      runnersPerSandbox = v;
      return this;
    }

    public Builder batchTimeout(Duration v) {
      batchTimeout = v;
      return this;
    }

    public Builder applyWait(Duration v) {
      applyWait = v;
      return this;
    }

    public Builder readyWait(Duration v) {
      readyWait = v;
      return this;
    }

    /** Maps a Python {@code major.minor} to a base image. */
    public Builder runtime(String pythonMinor, String image) {
      runtimes.put(pythonMinor, image);
      return this;
    }

    /** Replaces the package indexes (the default is PyPI). */
    public Builder indexUrls(List<String> urls) {
      indexUrls = new ArrayList<>(urls);
      indexUrlsFromDefault = false;
      return this;
    }

    public Builder cacheMemoryBytes(long v) {
      cacheMemoryBytes = v;
      return this;
    }

    public Builder cacheLocalMaxBytes(long v) {
      cacheLocalMaxBytes = v;
      return this;
    }

    /** Turns on the shared remote cache tier (any S3-compatible server). */
    public Builder s3(String bucket, String endpoint, String region, boolean pathStyle) {
      s3Bucket = bucket;
      s3Endpoint = endpoint;
      s3Region = region;
      s3PathStyle = pathStyle;
      return this;
    }

    /** Pushes every UDF image to {@code repository} ({@code HOST[:PORT]/REPOSITORY}) once built. */
    public Builder registry(String repository, boolean insecure) {
      registry = repository;
      registryInsecure = insecure;
      return this;
    }

    /**
     * Applies a YAML (or JSON) config file whose keys are the long flag names. Unknown keys are
     * errors, so a typo does not silently fall back to a default.
     */
    public Builder load(Path file) throws IOException, KilnException {
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
    public Builder set(String key, String value) {
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
                    + " registry-insecure)");
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
              : ConfigValues.defaultSandboxMemory(DEFAULT_SANDBOX_MEMORY_SHARE);
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
      try {
        WorkerSizes.of(workerSizes);
      } catch (KilnException e) {
        errors.add(e.getMessage());
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
          registryInsecure || (registry != null && registry.matches(LOCAL_REGISTRY)));
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
}
