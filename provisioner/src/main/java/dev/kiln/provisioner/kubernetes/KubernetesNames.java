package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.Pod;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.Locale;
import java.util.Map;

/**
 * Kubernetes names and label values for Kiln's objects. Tenants and UDF names may hold anything a
 * SQL identifier may; Kubernetes names are DNS labels (lower-case letters, digits and {@code -}, at
 * most 63). A readable part is kept, and a hash of the original makes two names that read alike
 * different objects.
 */
public final class KubernetesNames {
  /** The most characters of a DNS label (a namespace name, a label value). */
  static final int MAX = 63;

  /** Labels every object Kiln creates carries. */
  public static final String MANAGED_BY = "app.kubernetes.io/managed-by";

  public static final String COMPONENT = "app.kubernetes.io/component";

  /** The {@link #COMPONENT} of sandbox pods. */
  public static final String SANDBOX = "udf-sandbox";

  /** The label naming a sandbox pod's {@link UdfWorker}. */
  public static final String WORKER = UdfWorker.GROUP + "/worker";

  /** The label of sandbox pods that may reach Kiln's egress proxy ({@code "true"}). */
  public static final String EGRESS = UdfWorker.GROUP + "/egress";

  /** The label naming a namespace's or pod's tenant (as {@link #labelValue}). */
  public static final String TENANT = UdfWorker.GROUP + "/tenant";

  /**
   * The prefix of the annotations that say which Kiln replicas hold a sandbox on a pod, one per
   * replica ({@link #holder}): when the worker asks for fewer pods, those no replica holds go
   * first.
   */
  static final String HELD_BY = UdfWorker.GROUP + "/held-by-";

  /**
   * The annotation the reconciler puts on a pod no replica holds before it removes it: a replica
   * that marks such a pod after finds it there and gives the pod up, and one that marked it before
   * shows in the answer to the reconciler's write, which then keeps the pod.
   */
  static final String CONDEMNED = UdfWorker.GROUP + "/condemned";

  /** The label holding a pod's template hash: a pod whose template changed is replaced. */
  public static final String TEMPLATE = UdfWorker.GROUP + "/template";

  private static final String NAMESPACE_PREFIX = "kiln-tenant-";

  private KubernetesNames() {}

  /** The namespace of a tenant's sandbox pods. */
  public static String tenantNamespace(String tenant) {
    return NAMESPACE_PREFIX + readable(tenant, MAX - NAMESPACE_PREFIX.length());
  }

  /** The name of the {@link UdfWorker} of a tenant's worker or UDF. */
  public static String workerName(String tenant, String udf) {
    return readable(tenant + "-" + udf, tenant + "\0" + udf, MAX, true);
  }

  /** The annotation a replica named {@code replica} puts on the pods it holds sandboxes on. */
  public static String holder(String replica) {
    return HELD_BY + hash(replica);
  }

  /** Whether some replica holds a sandbox on the pod. */
  public static boolean isHeld(Pod p) {
    Map<String, String> a = p.getMetadata().getAnnotations();
    return a != null && a.keySet().stream().anyMatch(k -> k.startsWith(HELD_BY));
  }

  /** Whether the reconciler is removing the pod ({@link #CONDEMNED}). */
  static boolean isCondemned(Pod p) {
    Map<String, String> a = p.getMetadata().getAnnotations();
    return a != null && a.containsKey(CONDEMNED);
  }

  /** How many replicas hold a sandbox on the pod. */
  static long holders(Pod p) {
    Map<String, String> a = p.getMetadata().getAnnotations();
    return a == null ? 0 : a.keySet().stream().filter(k -> k.startsWith(HELD_BY)).count();
  }

  /** A label value that stands for {@code s} (kept as it is when it is one already). */
  public static String labelValue(String s) {
    return readable(s, MAX);
  }

  /**
   * {@code s} as a DNS label of at most {@code max} characters, hashed only when it had to change.
   */
  static String readable(String s, int max) {
    return readable(s, s, max, false);
  }

  private static String readable(String s, String hashed, int max, boolean alwaysHash) {
    String lower = s.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9-]+", "-");
    lower = lower.replaceAll("-+", "-").replaceAll("^-|-$", "");
    if (!alwaysHash && lower.equals(s) && !s.isEmpty() && s.length() <= max) {
      return s;
    }
    String hash = hash(hashed);
    int keep = Math.min(lower.length(), max - hash.length() - 1);
    String head = lower.substring(0, keep).replaceAll("-$", "");
    return head.isEmpty() ? "x" + hash : head + "-" + hash;
  }

  /** Ten hex digits of the SHA-256 of {@code s}. */
  static String hash(String s) {
    try {
      byte[] d = MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
      return HexFormat.of().formatHex(d, 0, 5);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
