package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.function.Supplier;
import java.util.stream.Stream;

/**
 * What a work directory has left on the host, found independently of the provisioner's own code:
 * runsc's container list, the kernel's mount table, the process table and the cgroup file systems.
 */
final class HostState {
  private HostState() {}

  static List<String> containers(Path workDir) throws IOException {
    HostCommand r =
        HostCommand.run(
            List.of("runsc", "--root", workDir.resolve("runsc").toString(), "list", "-quiet"),
            Duration.ofSeconds(30));
    assertThat(r.exitCode()).as("runsc list: %s", r.stderr()).isZero();
    return r.stdout().lines().filter(l -> !l.isBlank()).toList();
  }

  static List<String> mountsUnder(Path dir) throws IOException {
    String prefix = dir.toAbsolutePath().toString() + "/";
    List<String> found = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      String mountPoint = line.split(" ")[4];
      if (mountPoint.startsWith(prefix)) {
        found.add(mountPoint);
      }
    }
    return found;
  }

  /** Command lines of processes that mention the work directory's runsc root. */
  static List<String> processes(Path workDir) throws IOException {
    String root = workDir.toAbsolutePath().resolve("runsc").toString();
    HostCommand r = HostCommand.run(List.of("pgrep", "-a", "-f", root), Duration.ofSeconds(10));
    return r.stdout().lines().filter(l -> l.contains(root)).toList();
  }

  static List<String> sandboxDirs(Path workDir) throws IOException {
    Path dir = workDir.resolve("sandboxes");
    if (!Files.isDirectory(dir)) {
      return List.of();
    }
    try (Stream<Path> s = Files.list(dir)) {
      return s.map(p -> p.getFileName().toString()).toList();
    }
  }

  /** Cgroup directories named {@code id} anywhere in the host's cgroup file systems. */
  static List<Path> cgroups(String id) throws IOException {
    List<Path> found = new ArrayList<>();
    Files.walkFileTree(
        Path.of("/sys/fs/cgroup"),
        java.util.Set.of(),
        8,
        new SimpleFileVisitor<>() {
          @Override
          public FileVisitResult preVisitDirectory(Path dir, BasicFileAttributes attrs) {
            if (dir.getFileName() != null && dir.getFileName().toString().equals(id)) {
              found.add(dir);
              return FileVisitResult.SKIP_SUBTREE;
            }
            return FileVisitResult.CONTINUE;
          }

          @Override
          public FileVisitResult visitFileFailed(Path file, IOException e) {
            // Other processes make and remove cgroups while this walks: skip what vanished.
            return FileVisitResult.CONTINUE;
          }
        });
    return found;
  }

  /**
   * Asserts that no container, mount, runsc process, sandbox directory or cgroup of {@code ids} is
   * left. Processes get a few seconds to exit: runsc's own ones end after the container does.
   */
  static void assertNothingLeft(Path workDir, Collection<String> ids) throws Exception {
    assertThat(containers(workDir)).as("runsc containers").isEmpty();
    assertThat(mountsUnder(workDir)).as("mounts").isEmpty();
    assertThat(sandboxDirs(workDir)).as("sandbox directories").isEmpty();
    awaitEmpty(() -> unchecked(() -> processes(workDir)), Duration.ofSeconds(10), "processes");
    for (String id : ids) {
      assertThat(cgroups(id)).as("cgroups of %s", id).isEmpty();
    }
  }

  static <T> void awaitEmpty(Supplier<List<T>> probe, Duration timeout, String what)
      throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    List<T> last = probe.get();
    while (!last.isEmpty() && System.nanoTime() < deadline) {
      Thread.sleep(50);
      last = probe.get();
    }
    assertThat(last).as(what).isEmpty();
  }

  interface IoSupplier<T> {
    T get() throws IOException;
  }

  static <T> T unchecked(IoSupplier<T> s) {
    try {
      return s.get();
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }
}
