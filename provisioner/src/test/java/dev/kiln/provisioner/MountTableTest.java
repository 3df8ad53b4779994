package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;

class MountTableTest {
  private static final List<String> LINES =
      List.of(
          "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard",
          "35 27 0:30 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu",
          "36 27 0:31 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
          "113 27 0:47 / /data/kiln/sandboxes/a/rootfs ro,relatime - overlay overlay"
              + " ro,lowerdir=l/1:l/0",
          "114 113 0:48 / /data/kiln/sandboxes/a/rootfs/proc rw - proc proc rw",
          "115 27 0:49 / /data/kiln/sandboxes/with\\040space/rootfs ro - overlay overlay ro",
          "116 27 0:50 / /data/kiln/sandboxes-other/b ro - overlay overlay ro");

  @Test
  void parsesMountPointsTypesAndSuperOptions() {
    List<MountTable.Mount> mounts = MountTable.parse(LINES);
    assertThat(mounts).hasSize(7);
    assertThat(mounts.get(1))
        .isEqualTo(new MountTable.Mount(Path.of("/sys/fs/cgroup/cpu"), "cgroup", "rw,cpu"));
    assertThat(mounts.get(2).fsType()).isEqualTo("cgroup2");
    assertThat(mounts.get(5).mountPoint())
        .isEqualTo(Path.of("/data/kiln/sandboxes/with space/rootfs"));
  }

  @Test
  void listsMountsUnderADirectoryDeepestFirst() {
    assertThat(
            MountTable.mountPointsUnder(MountTable.parse(LINES), Path.of("/data/kiln/sandboxes")))
        .containsExactly(
            Path.of("/data/kiln/sandboxes/a/rootfs/proc"),
            Path.of("/data/kiln/sandboxes/a/rootfs"),
            Path.of("/data/kiln/sandboxes/with space/rootfs"));
  }

  @Test
  void unescapesOctalAndLeavesOtherBackslashes() {
    assertThat(MountTable.unescape("a\\040b\\011c\\134d")).isEqualTo("a b\tc\\d");
    assertThat(MountTable.unescape("a\\9b\\04")).isEqualTo("a\\9b\\04");
  }
}
