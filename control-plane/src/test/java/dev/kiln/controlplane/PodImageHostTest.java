package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** When Kiln runs a base's Python in a pod, and what it says when it compiles no byte code. */
class PodImageHostTest {
  @TempDir Path dir;

  @Test
  void gvisorRunsHereOnlyWithRunscAndRoot() throws Exception {
    assertThat(PodImageHost.canRunGvisor(dir.resolve("no-runsc").toString())).isFalse();
    assertThat(PodImageHost.canRunGvisor("no-such-runsc-on-path")).isFalse();
    Path runsc =
        Files.createFile(
            dir.resolve("runsc"),
            PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwxr-xr-x")));
    boolean root = Integer.valueOf(0).equals(Files.getAttribute(Path.of("/proc/self"), "unix:uid"));
    assertThat(PodImageHost.canRunGvisor(runsc.toString())).isEqualTo(root);
    assertThat(PodImageHost.canRunGvisor("sh")).as("a name found on PATH").isEqualTo(root);
  }

  @Test
  void withoutLocalGvisorNoByteCodeIsAskedForAndAskingSaysWhy() {
    PodImageHost host =
        new PodImageHost(
            null,
            image -> {
              throw new AssertionError("nothing to push");
            },
            null);
    assertThat(host.compilesByteCode()).isFalse();
    assertThatThrownBy(() -> host.runInBackground(null, List.of("python3")))
        .hasMessageContaining("byte code")
        .hasMessageContaining("runsc");
  }
}
