package dev.kiln.provisioner;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * OCI runtime documents for runsc: the bundle's {@code config.json} for a sandbox and the {@code
 * process.json} of an exec. Processes get no capabilities, a fixed user and a file limit; the
 * sandbox gets proc, a private /dev, read-only sys, sized tmpfs scratch space ({@link
 * #SCRATCH_MOUNTS}), a process limit, and its memory and CPU limits as cgroup settings under a
 * {@code kiln} parent cgroup.
 *
 * <p>Resource limits are enforced inside gVisor where a breach should fail one call, not the
 * sandbox: RLIMIT_NPROC in the init's rlimits (runsc gives every process of the container the
 * init's rlimits; it ignores those of an exec's process.json) makes a fork or thread start beyond
 * {@link Limits#maxProcesses} fail with EAGAIN, and the tmpfs {@code size} option makes a write
 * beyond a scratch mount's share of {@link Limits#writableBytes} fail with ENOSPC. A pids limit in
 * the host cgroup would count the sentry's own threads and kill the whole sandbox instead.
 */
final class OciSpec {
  static final ObjectMapper JSON = new ObjectMapper();
  static final long CPU_PERIOD_US = 100_000;
  static final int NOFILE = 4096;

  /** The CPU shares of a sandbox in the background (the kernel's least; 1024 is the default). */
  static final int BACKGROUND_SHARES = 2;

  static final String CGROUP_PARENT = "kiln";
  private static final long PAGE = 4096;

  /**
   * The places an unprivileged process can write in a Debian-based image, each a tmpfs with its
   * share of {@link Limits#writableBytes} (the divisor here): /tmp half, /dev/shm a quarter,
   * /var/tmp and /run/lock an eighth each. Writes elsewhere go to the root file system's overlay,
   * kept in sandbox memory without a size of its own (runsc 20221219 has no size for it): only a
   * layer that makes a directory writable for the sandbox user reaches it, and the memory limit
   * bounds it.
   */
  static final Map<String, Integer> SCRATCH_MOUNTS =
      Map.of("/tmp", 2, "/dev/shm", 4, "/var/tmp", 8, "/run/lock", 8);

  private OciSpec() {}

  /** A process: its argv, environment, working directory and user. */
  record ProcessSpec(List<String> args, List<String> env, String cwd, int uid, int gid) {}

  static ObjectNode process(ProcessSpec p) {
    ObjectNode n = JSON.createObjectNode();
    n.put("terminal", false);
    ObjectNode user = n.putObject("user");
    user.put("uid", p.uid());
    user.put("gid", p.gid());
    strings(n.putArray("args"), p.args());
    strings(n.putArray("env"), p.env());
    n.put("cwd", p.cwd());
    ObjectNode caps = n.putObject("capabilities");
    for (String set : List.of("bounding", "effective", "inheritable", "permitted", "ambient")) {
      caps.putArray(set);
    }
    ObjectNode nofile = n.putArray("rlimits").addObject();
    nofile.put("type", "RLIMIT_NOFILE");
    nofile.put("hard", NOFILE);
    nofile.put("soft", NOFILE);
    n.put("noNewPrivileges", true);
    return n;
  }

  /** The bundle configuration of sandbox {@code id} whose root file system is {@code rootfs}. */
  static ObjectNode config(String id, ProcessSpec init, Path rootfs, Limits limits) {
    return config(id, init, rootfs, limits, List.of(), false, false);
  }

  /**
   * The bundle configuration, with {@code writableDirs} (see {@link SandboxSpec#writableDirs}) as
   * tmpfs mounts the sandbox user may write, each as large as the sandbox's scratch space, and the
   * least CPU shares when in the {@code background}. With {@code runscNetwork}, the sandbox gets no
   * network namespace of its own: it uses the one runsc runs in (a {@link SandboxNetwork}'s).
   */
  static ObjectNode config(
      String id,
      ProcessSpec init,
      Path rootfs,
      Limits limits,
      List<String> writableDirs,
      boolean background,
      boolean runscNetwork) {
    ObjectNode n = JSON.createObjectNode();
    n.put("ociVersion", "1.0.2");
    ObjectNode process = process(init);
    // Counted per user across the sandbox (every process runs as the same user), threads included.
    ObjectNode nproc = ((ArrayNode) process.get("rlimits")).addObject();
    nproc.put("type", "RLIMIT_NPROC");
    nproc.put("hard", limits.maxProcesses());
    nproc.put("soft", limits.maxProcesses());
    n.set("process", process);
    ObjectNode root = n.putObject("root");
    root.put("path", rootfs.toAbsolutePath().toString());
    // Writable inside the sandbox: runsc's --overlay2=root:memory keeps the writes in sandbox
    // memory, and the host mount under it is read-only.
    root.put("readonly", false);
    n.put("hostname", "kiln");
    ArrayNode mounts = n.putArray("mounts");
    mount(mounts, "/proc", "proc", "proc", List.of("nosuid", "noexec", "nodev"));
    mount(mounts, "/dev", "tmpfs", "tmpfs", List.of("nosuid", "strictatime", "mode=755"));
    mount(
        mounts,
        "/dev/shm",
        "tmpfs",
        "shm",
        List.of("nosuid", "noexec", "nodev", "mode=1777", scratchSize("/dev/shm", limits)));
    mount(mounts, "/sys", "sysfs", "sysfs", List.of("nosuid", "noexec", "nodev", "ro"));
    for (String dir : List.of("/tmp", "/var/tmp", "/run/lock")) {
      mount(
          mounts,
          dir,
          "tmpfs",
          "tmpfs",
          List.of("nosuid", "nodev", "mode=1777", scratchSize(dir, limits)));
    }
    for (String dir : writableDirs) {
      mount(
          mounts,
          dir,
          "tmpfs",
          "tmpfs",
          List.of(
              "nosuid",
              "nodev",
              "mode=1777",
              "size=" + Math.max(PAGE, limits.writableBytes() & ~(PAGE - 1))));
    }
    ObjectNode linux = n.putObject("linux");
    ArrayNode namespaces = linux.putArray("namespaces");
    for (String ns : List.of("pid", "network", "ipc", "uts", "mount")) {
      if (!(runscNetwork && ns.equals("network"))) {
        namespaces.addObject().put("type", ns);
      }
    }
    ObjectNode resources = linux.putObject("resources");
    resources.putObject("memory").put("limit", limits.memoryBytes());
    ObjectNode cpu = resources.putObject("cpu");
    cpu.put("quota", cpuQuota(limits.cpus()));
    cpu.put("period", CPU_PERIOD_US);
    if (background) {
      cpu.put("shares", BACKGROUND_SHARES);
    }
    linux.put("cgroupsPath", cgroupsPath(id));
    return n;
  }

  /** The tmpfs {@code size} option of scratch mount {@code dir}: its share, whole pages. */
  static String scratchSize(String dir, Limits limits) {
    long share = limits.writableBytes() / SCRATCH_MOUNTS.get(dir);
    return "size=" + Math.max(PAGE, share & ~(PAGE - 1));
  }

  /** Relative, so the sandbox's cgroups sit under the cgroups of the process that runs runsc. */
  static String cgroupsPath(String id) {
    return CGROUP_PARENT + "/" + id;
  }

  static long cpuQuota(double cpus) {
    return Math.max(1000, Math.round(cpus * CPU_PERIOD_US));
  }

  /**
   * Environments merged key by key: later lists override earlier ones; keys keep first-seen order.
   */
  @SafeVarargs
  static List<String> mergeEnv(List<String>... layers) {
    Map<String, String> env = new LinkedHashMap<>();
    for (List<String> layer : layers) {
      for (String kv : layer) {
        int eq = kv.indexOf('=');
        if (eq <= 0) {
          throw new IllegalArgumentException(
              "environment entry '" + kv + "' is not of the form KEY=value");
        }
        env.put(kv.substring(0, eq), kv);
      }
    }
    return List.copyOf(env.values());
  }

  /** Writes {@code doc} to {@code file} through a temporary file and a rename. */
  static void write(ObjectNode doc, Path file) throws IOException {
    Path temp = file.resolveSibling(file.getFileName() + ".tmp");
    Files.deleteIfExists(temp);
    // Owner-only: a process's environment (a UDF's variables, its egress credentials) is in it.
    Files.createFile(
        temp, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------")));
    Files.write(temp, JSON.writerWithDefaultPrettyPrinter().writeValueAsBytes(doc));
    Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
  }

  private static void mount(
      ArrayNode mounts, String dest, String type, String source, List<String> opts) {
    ObjectNode m = mounts.addObject();
    m.put("destination", dest);
    m.put("type", type);
    m.put("source", source);
    strings(m.putArray("options"), opts);
  }

  private static void strings(ArrayNode a, List<String> values) {
    values.forEach(a::add);
  }
}
