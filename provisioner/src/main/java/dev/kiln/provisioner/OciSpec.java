package dev.kiln.provisioner;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * OCI runtime documents for runsc: the bundle's {@code config.json} for a sandbox and the {@code
 * process.json} of an exec. Processes get no capabilities, a fixed user and a file limit; the
 * sandbox gets proc, a private /dev, read-only sys, tmpfs /tmp and /dev/shm, and its memory and CPU
 * limits as cgroup settings under a {@code kiln} parent cgroup.
 */
final class OciSpec {
  static final ObjectMapper JSON = new ObjectMapper();
  static final long CPU_PERIOD_US = 100_000;
  static final int NOFILE = 4096;
  static final String CGROUP_PARENT = "kiln";

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
    ObjectNode n = JSON.createObjectNode();
    n.put("ociVersion", "1.0.2");
    n.set("process", process(init));
    ObjectNode root = n.putObject("root");
    root.put("path", rootfs.toAbsolutePath().toString());
    // Writable inside the sandbox: runsc's --overlay2=root:memory keeps the writes in sandbox
    // memory, and the host mount under it is read-only.
    root.put("readonly", false);
    n.put("hostname", "kiln");
    ArrayNode mounts = n.putArray("mounts");
    mount(mounts, "/proc", "proc", "proc", List.of("nosuid", "noexec", "nodev"));
    mount(mounts, "/dev", "tmpfs", "tmpfs", List.of("nosuid", "strictatime", "mode=755"));
    mount(mounts, "/dev/shm", "tmpfs", "shm", List.of("nosuid", "noexec", "nodev", "mode=1777"));
    mount(mounts, "/sys", "sysfs", "sysfs", List.of("nosuid", "noexec", "nodev", "ro"));
    mount(mounts, "/tmp", "tmpfs", "tmpfs", List.of("nosuid", "nodev", "mode=1777"));
    ObjectNode linux = n.putObject("linux");
    ArrayNode namespaces = linux.putArray("namespaces");
    for (String ns : List.of("pid", "network", "ipc", "uts", "mount")) {
      namespaces.addObject().put("type", ns);
    }
    ObjectNode resources = linux.putObject("resources");
    resources.putObject("memory").put("limit", limits.memoryBytes());
    ObjectNode cpu = resources.putObject("cpu");
    cpu.put("quota", cpuQuota(limits.cpus()));
    cpu.put("period", CPU_PERIOD_US);
    linux.put("cgroupsPath", cgroupsPath(id));
    return n;
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
