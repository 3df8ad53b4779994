package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Cleans up what an earlier provisioner on the same work directory left behind when its process
 * died without stopping its sandboxes (a crash, {@code kill -9}): runsc containers, the runsc,
 * gofer and sandbox processes, root file system mounts, sandbox directories and cgroups.
 */
final class Reaper {
  private static final Logger log = LoggerFactory.getLogger(Reaper.class);
  private static final long PROCESS_WAIT_MILLIS = 5_000;

  private Reaper() {}

  /** What one reaping removed. */
  record Reaped(int containers, int processes, int mounts, int directories, int cgroups) {
    boolean isEmpty() {
      return containers + processes + mounts + directories + cgroups == 0;
    }
  }

  static Reaped reap(Runsc runsc, Path sandboxes) throws IOException {
    long t0 = System.nanoTime();
    List<String> containers = runsc.list();
    int processes = HostProcesses.usingRunscRoot(runsc.root()).size();
    for (String id : containers) {
      runsc.kill(id);
      HostCommand r = runsc.delete(id);
      if (!r.ok()) {
        log.warn("reaping: runsc delete {} failed: {}", id, r.diagnostics());
      }
    }
    endProcesses(runsc.root());

    List<Path> mounts = MountTable.mountPointsUnder(sandboxes);
    for (Path m : mounts) {
      RootFs.unmount(m);
    }

    Set<String> ids = new LinkedHashSet<>(containers);
    List<Path> dirs = new ArrayList<>();
    try (DirectoryStream<Path> entries = Files.newDirectoryStream(sandboxes)) {
      for (Path d : entries) {
        dirs.add(d);
        ids.add(d.getFileName().toString());
      }
    }
    int cgroups = 0;
    for (String id : ids) {
      cgroups += Cgroups.remove(id);
    }
    for (Path d : dirs) {
      FileTree.delete(d);
    }
    // Networks of sandboxes a dead process ran: no process is in them any more.
    try {
      int networks = SandboxNetwork.reapUnused(Duration.ofMinutes(1));
      if (networks > 0) {
        log.info("reaped {} sandbox networks no process used", networks);
      }
    } catch (IOException e) {
      log.warn("reaping sandbox networks failed: {}", e.getMessage());
    }
    Reaped reaped = new Reaped(containers.size(), processes, mounts.size(), dirs.size(), cgroups);
    if (!reaped.isEmpty()) {
      log.info(
          "reaped what an earlier provisioner left in {} in {} ms: {} containers, {} runsc"
              + " processes, {} mounts, {} sandbox directories, {} cgroups",
          sandboxes.getParent(),
          (System.nanoTime() - t0) / 1_000_000,
          reaped.containers(),
          reaped.processes(),
          reaped.mounts(),
          reaped.directories(),
          reaped.cgroups());
    }
    return reaped;
  }

  /**
   * Waits for runsc processes of this root to end now that their containers are gone, and kills the
   * ones that do not.
   */
  private static void endProcesses(Path root) {
    long deadline = System.currentTimeMillis() + PROCESS_WAIT_MILLIS;
    List<Long> left = HostProcesses.usingRunscRoot(root);
    while (!left.isEmpty() && System.currentTimeMillis() < deadline) {
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
      left = HostProcesses.usingRunscRoot(root);
    }
    for (long pid : left) {
      log.warn("reaping: killing leftover runsc process {}", pid);
      ProcessHandle.of(pid).ifPresent(ProcessHandle::destroyForcibly);
    }
  }
}
