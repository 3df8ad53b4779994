package dev.kiln.controlplane;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
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
 * @param registryUsername the user Kiln logs in to that registry as, with the password in {@code
 *     registryPasswordFile}; null to use what {@code docker login} left in the Docker config
 * @param registryPasswordFile the file holding that user's password (never the password itself on a
 *     command line), or null
 * @param kubernetes UDF sandboxes are pods of a Kubernetes cluster (gVisor RuntimeClass) instead of
 *     local gVisor sandboxes; needs {@code registry}
 * @param kubeconfig the cluster's kubeconfig file, or null to find the cluster as kubectl does (in
 *     a pod, its service account)
 * @param kubernetesNamespace Kiln's namespace: its UdfWorker resources and leader lease
 * @param egressPolicy a TOML file of per-tenant, per-UDF egress allow-lists, or null
 * @param egressDeny address ranges (CIDR) no UDF may connect to whatever its allow-list says
 * @param egressHosts a file ({@code /etc/hosts} format) of names the egress proxy resolves before
 *     asking DNS, or null
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
    boolean registryInsecure,
    String registryUsername,
    Path registryPasswordFile,
    boolean kubernetes,
    Path kubeconfig,
    String kubernetesNamespace,
    Path egressPolicy,
    List<String> egressDeny,
    Path egressHosts) {

  /** The share of the host's memory sandboxes may hold when --max-sandbox-memory is not set. */
  public static final double DEFAULT_SANDBOX_MEMORY_SHARE = 0.75;

  public KilnConfig {
    runtimes = Map.copyOf(runtimes);
    indexUrls = List.copyOf(indexUrls);
    workerSizes = List.copyOf(workerSizes);
    egressDeny = List.copyOf(egressDeny);
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

  public static KilnConfigBuilder builder() {
    return new KilnConfigBuilder();
  }

  public KilnConfigBuilder toBuilder() {
    KilnConfigBuilder b = new KilnConfigBuilder();
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
    b.registryUsername = registryUsername;
    b.registryPasswordFile = registryPasswordFile;
    b.kubernetes = kubernetes;
    b.kubeconfig = kubeconfig;
    b.kubernetesNamespace = kubernetesNamespace;
    b.egressPolicy = egressPolicy;
    b.egressDeny = new ArrayList<>(egressDeny.isEmpty() ? List.of("none") : egressDeny);
    b.egressHosts = egressHosts;
    return b;
  }
}
