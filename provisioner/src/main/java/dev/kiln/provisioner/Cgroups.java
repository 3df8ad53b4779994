package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Finds and removes the host cgroups runsc made for a sandbox ({@code kiln/<id>} in every
 * hierarchy). runsc removes them itself when it stops a sandbox; these are the ones left when runsc
 * was killed first.
 */
final class Cgroups {
  private static final Logger log = LoggerFactory.getLogger(Cgroups.class);
  private static final Pattern CONTAINER_ID = Pattern.compile("[A-Za-z0-9_+-][A-Za-z0-9_.+-]*");

  private Cgroups() {}

  /**
   * Where sandbox {@code id}'s cgroups can be: in each hierarchy below this process's own cgroup
   * (runsc resolves the relative cgroups path against the cgroup of the process that runs it) and
   * below the hierarchy's root (where an earlier process in another cgroup may have put them).
   */
  static List<Path> candidates(String id) throws IOException {
    if (!CONTAINER_ID.matcher(id).matches()) {
      // Not a container id runsc would accept, so not one of ours: never a path outside kiln/.
      return List.of();
    }
    List<MountTable.Mount> mounts = MountTable.read();
    Set<Path> dirs = new LinkedHashSet<>();
    for (String line : Files.readAllLines(Path.of("/proc/self/cgroup"))) {
      String[] f = line.split(":", 3);
      if (f.length < 3) {
        continue;
      }
      Path mountPoint = hierarchyMount(mounts, f[1]);
      if (mountPoint == null) {
        continue;
      }
      String own = f[2].startsWith("/") ? f[2].substring(1) : f[2];
      dirs.add(mountPoint.resolve(own).resolve(OciSpec.cgroupsPath(id)).normalize());
      dirs.add(mountPoint.resolve(OciSpec.cgroupsPath(id)));
    }
    return List.copyOf(dirs);
  }

  private static Path hierarchyMount(List<MountTable.Mount> mounts, String controllers) {
    if (controllers.isEmpty()) {
      return mounts.stream()
          .filter(m -> m.fsType().equals("cgroup2"))
          .map(MountTable.Mount::mountPoint)
          .findFirst()
          .orElse(null);
    }
    List<String> wanted = Arrays.asList(controllers.split(","));
    for (MountTable.Mount m : mounts) {
      if (m.fsType().equals("cgroup")
          && Arrays.asList(m.superOptions().split(",")).containsAll(wanted)) {
        return m.mountPoint();
      }
    }
    return null;
  }

  /**
   * Memory charged to sandbox {@code id}'s cgroup now ({@code memory.current} on cgroup v2, {@code
   * memory.usage_in_bytes} on v1), or empty when it has none.
   */
  static OptionalLong memoryBytes(String id) {
    try {
      for (Path dir : existing(id)) {
        for (String file : List.of("memory.current", "memory.usage_in_bytes")) {
          Path f = dir.resolve(file);
          if (Files.isRegularFile(f)) {
            return OptionalLong.of(Long.parseLong(Files.readString(f).trim()));
          }
        }
      }
    } catch (IOException | NumberFormatException e) {
      // gone meanwhile, or not readable: unknown
    }
    return OptionalLong.empty();
  }

  /**
   * Makes a sandbox's cgroup (any of its {@link #candidates}) idle for the CPU scheduler ({@code
   * cpu.idle} 1, Linux 5.15 or later): any task that is not idle takes a CPU from it as soon as it
   * wakes up, where the least CPU shares still let it keep a CPU for a moment. False when the
   * kernel has no such setting (the least shares then do what they can).
   */
  static boolean idleCpuPriority(List<Path> candidates) {
    boolean set = false;
    for (Path dir : candidates) {
      Path file = dir.resolve("cpu.idle");
      try {
        if (Files.isRegularFile(file)) {
          Files.writeString(file, "1");
          set = true;
        }
      } catch (IOException e) {
        log.debug("could not make the cgroup {} idle: {}", dir, e.toString());
      }
    }
    return set;
  }

  /**
   * Gives a sandbox's cgroup (any of its {@link #candidates}) the default CPU priority: {@code
   * cpu.idle} 0, and {@code cpu.shares} 1024 on cgroup v1, {@code cpu.weight} 100 on v2.
   */
  static void normalCpuPriority(List<Path> candidates) throws IOException {
    for (Path dir : candidates) {
      for (var f :
          List.of(
              Map.entry("cpu.idle", "0"),
              Map.entry("cpu.shares", "1024"),
              Map.entry("cpu.weight", "100"))) {
        Path file = dir.resolve(f.getKey());
        if (Files.isRegularFile(file)) {
          Files.writeString(file, f.getValue());
        }
      }
    }
  }

  /** Existing cgroup directories of sandbox {@code id}. */
  static List<Path> existing(String id) throws IOException {
    List<Path> found = new ArrayList<>();
    for (Path p : candidates(id)) {
      if (Files.isDirectory(p)) {
        found.add(p);
      }
    }
    return found;
  }

  /**
   * Kills what still runs in sandbox {@code id}'s cgroups and removes them. Returns the number of
   * cgroups removed.
   */
  static int remove(String id) throws IOException {
    int removed = 0;
    for (Path dir : existing(id)) {
      for (int attempt = 0; attempt < 40; attempt++) {
        killMembers(dir);
        try {
          Files.delete(dir);
          removed++;
          break;
        } catch (NoSuchFileException e) {
          break;
        } catch (IOException e) {
          // Busy until the killed processes are gone.
          if (attempt == 39) {
            log.warn("cannot remove cgroup {}: {}", dir, e.toString());
          }
          sleep(50);
        }
      }
    }
    return removed;
  }

  private static void killMembers(Path dir) {
    try {
      for (String pid : Files.readAllLines(dir.resolve("cgroup.procs"))) {
        if (!pid.isBlank()) {
          ProcessHandle.of(Long.parseLong(pid.strip())).ifPresent(ProcessHandle::destroyForcibly);
        }
      }
    } catch (IOException | NumberFormatException e) {
      // Nothing readable to kill: the rmdir that follows says whether it matters.
    }
  }

  private static void sleep(long millis) {
    try {
      Thread.sleep(millis);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
