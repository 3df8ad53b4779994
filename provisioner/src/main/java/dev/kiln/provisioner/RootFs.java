package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A sandbox's root file system on the host: a read-only overlay of extracted layers.
 *
 * <p>The overlay's {@code lowerdir} option must fit in one page (4 KiB) of mount data, which 40
 * absolute layer paths do not. So the layers are linked from short names ({@code l/0}, {@code l/1},
 * ...) in the sandbox directory and {@code mount} runs there with relative paths; the kernel
 * resolves the links once, at mount time. An image with one layer gets an empty directory below it,
 * because overlayfs wants two lower layers and this keeps whiteouts hidden the same way.
 */
final class RootFs {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);

  private RootFs() {}

  /**
   * Mounts {@code layers} (bottom first) at {@code sandboxDir/rootfs}, read-only, and returns the
   * mount point.
   */
  static Path mount(Path sandboxDir, List<Path> layers, Path emptyLayer) throws IOException {
    List<Path> lowers = new ArrayList<>(layers);
    if (lowers.size() == 1) {
      lowers.addFirst(emptyLayer);
    }
    Path links = Files.createDirectories(sandboxDir.resolve("l"));
    List<String> lowerdir = new ArrayList<>();
    for (int i = 0; i < lowers.size(); i++) {
      Files.createSymbolicLink(links.resolve(Integer.toString(i)), lowers.get(i).toAbsolutePath());
      lowerdir.addFirst("l/" + i);
    }
    Path rootfs = Files.createDirectories(sandboxDir.resolve("rootfs"));
    HostCommand r =
        HostCommand.run(
            List.of(
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                "ro,lowerdir=" + String.join(":", lowerdir),
                "rootfs"),
            sandboxDir,
            null,
            TIMEOUT);
    if (!r.ok()) {
      throw new IOException(
          "mounting the sandbox root file system at "
              + rootfs
              + " failed ("
              + r.diagnostics()
              + "); the provisioner needs root (CAP_SYS_ADMIN) and a kernel with overlayfs");
    }
    return rootfs;
  }

  /**
   * Unmounts {@code mountPoint}; when it stays busy (a process still holds it), detaches it lazily
   * so the kernel frees it once the last user is gone.
   */
  static void unmount(Path mountPoint) throws IOException {
    IOException last = null;
    for (int attempt = 0; attempt < 5; attempt++) {
      if (!MountTable.isMountPoint(mountPoint)) {
        return;
      }
      HostCommand r = HostCommand.run(List.of("umount", mountPoint.toString()), TIMEOUT);
      if (r.ok()) {
        return;
      }
      last = new IOException("unmounting " + mountPoint + " failed: " + r.diagnostics());
      try {
        Thread.sleep(50L << attempt);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    HostCommand r = HostCommand.run(List.of("umount", "-l", mountPoint.toString()), TIMEOUT);
    if (!r.ok() && MountTable.isMountPoint(mountPoint)) {
      IOException e =
          new IOException("unmounting " + mountPoint + " lazily failed: " + r.diagnostics());
      if (last != null) {
        e.addSuppressed(last);
      }
      throw e;
    }
  }
}
