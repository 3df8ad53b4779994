package dev.kiln.provisioner;

import java.util.List;
import java.util.Objects;

/**
 * A request for one sandbox.
 *
 * @param name a short human-readable label (e.g. the content key's short form); the provisioner
 *     makes the sandbox id unique itself
 * @param image what to run
 * @param limits memory and CPU limits
 * @param extraEnv {@code KEY=value} pairs added to (and overriding) the image's environment
 * @param writableDirs directories, absent from the image, that the sandbox's user may write: each
 *     an empty tmpfs (e.g. where a warm sandbox's runners put the UDF they are handed), bounded by
 *     the sandbox's memory
 * @param background started with the lowest CPU priority (a sandbox started ahead of need must not
 *     slow down those at work) until {@link Sandbox#toForeground} is called
 * @param network the sandbox's network: null for none (only its own loopback), or a {@link
 *     SandboxNetwork} whose interfaces the sandbox uses (and nothing else of the host's network)
 * @param owner who the sandbox is for (a tenant), for provisioners that place sandboxes by owner (a
 *     Kubernetes namespace per tenant); null when nobody in particular
 * @param egress whether the sandbox may reach Kiln's egress proxy (a pod's network policy lets it;
 *     a local sandbox gets a {@code network} for that instead)
 */
public record SandboxSpec(
    String name,
    SandboxImage image,
    Limits limits,
    List<String> extraEnv,
    List<String> writableDirs,
    boolean background,
    SandboxNetwork network,
    String owner,
    boolean egress) {
  public SandboxSpec {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(image, "image");
    Objects.requireNonNull(limits, "limits");
    extraEnv = List.copyOf(extraEnv);
    writableDirs = List.copyOf(writableDirs);
    for (String d : writableDirs) {
      if (!d.startsWith("/") || OciSpec.SCRATCH_MOUNTS.containsKey(d)) {
        throw new IllegalArgumentException("not a directory to add to a sandbox: " + d);
      }
    }
  }

  /** A sandbox with no writable directories beyond the usual scratch space. */
  public SandboxSpec(String name, SandboxImage image, Limits limits, List<String> extraEnv) {
    this(name, image, limits, extraEnv, List.of(), false, null, null, false);
  }

  /** A sandbox with writable directories, at normal CPU priority. */
  public SandboxSpec(
      String name,
      SandboxImage image,
      Limits limits,
      List<String> extraEnv,
      List<String> writableDirs) {
    this(name, image, limits, extraEnv, writableDirs, false, null, null, false);
  }

  /** The same sandbox, started in the background. */
  public SandboxSpec inBackground() {
    return new SandboxSpec(
        name, image, limits, extraEnv, writableDirs, true, network, owner, egress);
  }

  /** The same sandbox, on {@code network} (see {@link SandboxNetwork}). */
  public SandboxSpec withNetwork(SandboxNetwork network) {
    return new SandboxSpec(
        name, image, limits, extraEnv, writableDirs, background, network, owner, egress);
  }

  /** The same sandbox, for {@code owner}. */
  public SandboxSpec withOwner(String owner) {
    return new SandboxSpec(
        name, image, limits, extraEnv, writableDirs, background, network, owner, egress);
  }

  /** The same sandbox, with {@code extraEnv} added, allowed to reach Kiln's egress proxy. */
  public SandboxSpec withEgress(List<String> extraEnv) {
    List<String> env = new java.util.ArrayList<>(this.extraEnv);
    env.addAll(extraEnv);
    return new SandboxSpec(
        name, image, limits, env, writableDirs, background, network, owner, true);
  }
}
