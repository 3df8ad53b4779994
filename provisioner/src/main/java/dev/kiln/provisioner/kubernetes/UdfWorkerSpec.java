package dev.kiln.provisioner.kubernetes;

import com.fasterxml.jackson.annotation.JsonInclude;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * What a {@link UdfWorker} asks for: its tenant, the image (by digest) and the command that starts
 * its runner listener, the size of each sandbox pod, how many pods, and whether it is suspended.
 * Nothing here is secret: it is readable by whoever may read the resource.
 */
@JsonInclude(JsonInclude.Include.NON_NULL)
public class UdfWorkerSpec {
  private String tenant;
  private String udf;
  private String key;
  private String image;
  private List<String> command = new ArrayList<>();
  private Map<String, String> env = new TreeMap<>();
  private String cpu = "1";
  private String memory = "1Gi";
  private int gpu;
  private boolean egress;
  private int replicas = 1;
  private int minReplicas;
  private int maxReplicas = 1;
  private boolean suspended;
  private Map<String, Integer> claims = new TreeMap<>();
  private String definition;
  private String envSecret;
  private String envVersion;

  /** The tenant the worker belongs to; its pods run in the tenant's namespace. */
  public String getTenant() {
    return tenant;
  }

  public void setTenant(String tenant) {
    this.tenant = tenant;
  }

  /** The worker's or UDF's name as its users know it (for people; pods are labelled with it). */
  public String getUdf() {
    return udf;
  }

  public void setUdf(String udf) {
    this.udf = udf;
  }

  /** The definition's content key. */
  public String getKey() {
    return key;
  }

  public void setKey(String key) {
    this.key = key;
  }

  /**
   * The image, by digest ({@code registry/repository@sha256:…}); empty until it is built and
   * pushed, and no pod starts before.
   */
  public String getImage() {
    return image;
  }

  public void setImage(String image) {
    this.image = image;
  }

  /**
   * The runner listener's command line in the image; it listens on every address at {@link
   * KubernetesSettings#runnerPort}.
   */
  public List<String> getCommand() {
    return command;
  }

  public void setCommand(List<String> command) {
    this.command = command == null ? new ArrayList<>() : command;
  }

  /**
   * Variables set on the worker's pods as they are here, readable by whoever reads the resource;
   * Kiln puts a UDF's own variables in {@link #getEnvSecret} instead.
   */
  public Map<String, String> getEnv() {
    return env;
  }

  public void setEnv(Map<String, String> env) {
    this.env = env == null ? new TreeMap<>() : env;
  }

  /** CPU per pod, as a Kubernetes quantity; requested and limited. */
  public String getCpu() {
    return cpu;
  }

  public void setCpu(String cpu) {
    this.cpu = cpu;
  }

  /** Memory per pod, as a Kubernetes quantity; requested and limited. */
  public String getMemory() {
    return memory;
  }

  public void setMemory(String memory) {
    this.memory = memory;
  }

  /** Whether its pods may reach Kiln's egress proxy (the worker has an egress allow-list). */
  public boolean isEgress() {
    return egress;
  }

  public void setEgress(boolean egress) {
    this.egress = egress;
  }

  /** GPUs per pod ({@code nvidia.com/gpu}); 0 for none. */
  public int getGpu() {
    return gpu;
  }

  public void setGpu(int gpu) {
    this.gpu = gpu;
  }

  /**
   * How many pods the worker wants now besides its {@link #getClaims claims} (set by hand or by a
   * tool); the sum is kept between the bounds.
   */
  public int getReplicas() {
    return replicas;
  }

  public void setReplicas(int replicas) {
    this.replicas = replicas;
  }

  /** The fewest pods while not suspended ({@code min_cluster_count}). */
  public int getMinReplicas() {
    return minReplicas;
  }

  public void setMinReplicas(int minReplicas) {
    this.minReplicas = minReplicas;
  }

  /** The most pods ({@code max_cluster_count}). */
  public int getMaxReplicas() {
    return maxReplicas;
  }

  public void setMaxReplicas(int maxReplicas) {
    this.maxReplicas = maxReplicas;
  }

  /** Suspended (idle past {@code auto_suspend}, or by hand): no pods. */
  public boolean isSuspended() {
    return suspended;
  }

  public void setSuspended(boolean suspended) {
    this.suspended = suspended;
  }

  /**
   * The pods each Kiln replica holds or is starting for its sandboxes, by replica: each replica
   * writes only its own entry (a merge patch of one key), so replicas never overwrite each other's
   * count.
   */
  public Map<String, Integer> getClaims() {
    return claims;
  }

  public void setClaims(Map<String, Integer> claims) {
    this.claims = claims == null ? new TreeMap<>() : claims;
  }

  /**
   * The record of the worker's definition that Kiln's control plane keeps here, so that any replica
   * can serve a call for it (opaque to the reconciler); null for a worker made without one.
   */
  public String getDefinition() {
    return definition;
  }

  public void setDefinition(String definition) {
    this.definition = definition;
  }

  /**
   * The Secret, in the tenant's namespace, whose keys become variables of the worker's pods (the
   * UDF's own variables, which may hold credentials); null for none.
   */
  public String getEnvSecret() {
    return envSecret;
  }

  public void setEnvSecret(String envSecret) {
    this.envSecret = envSecret;
  }

  /** A hash of that Secret's content: pods made with other values are replaced. */
  public String getEnvVersion() {
    return envVersion;
  }

  public void setEnvVersion(String envVersion) {
    this.envVersion = envVersion;
  }

  /** The pods all replicas claim. */
  public int claimedPods() {
    int n = 0;
    for (Integer c : claims.values()) {
      n += c == null ? 0 : Math.max(0, c);
    }
    return n;
  }

  /**
   * How many pods the reconciler keeps: {@link #getReplicas replicas} plus the replicas' claims,
   * within the bounds; none while suspended or without an image.
   */
  public int desiredPods() {
    if (suspended || image == null || image.isEmpty()) {
      return 0;
    }
    return Math.max(minReplicas, Math.min(replicas + claimedPods(), maxReplicas));
  }
}
