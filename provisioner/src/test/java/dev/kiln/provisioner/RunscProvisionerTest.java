package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RunscProvisionerTest {
  @Test
  void idsAreReadableValidContainerIdsAndUnique() {
    String id = RunscProvisioner.newId("K3y/Short Form!");
    assertThat(id).matches("kiln-k3y-short-form-[0-9a-f]{10}");
    assertThat(RunscProvisioner.newId("")).matches("kiln-[0-9a-f]{10}");
    assertThat(RunscProvisioner.newId("x".repeat(200))).hasSizeLessThanOrEqualTo(5 + 24 + 1 + 10);
    assertThat(RunscProvisioner.newId("..--")).matches("kiln-[0-9a-f]{10}");
    Set<String> ids = new HashSet<>();
    for (int i = 0; i < 1000; i++) {
      ids.add(RunscProvisioner.newId("same"));
    }
    assertThat(ids).hasSize(1000);
  }

  @Test
  void theBuilderReportsEveryProblemAtOnce() {
    assertThatThrownBy(
            () ->
                RunscProvisioner.builder()
                    .runsc(" ")
                    .startTimeout(Duration.ZERO)
                    .runAsUser(-1, 0)
                    .build())
        .isInstanceOf(IllegalStateException.class)
        .hasMessageContaining("workDir is required")
        .hasMessageContaining("runsc must name the runsc binary")
        .hasMessageContaining("startTimeout must be positive")
        .hasMessageContaining("runAsUser needs a uid and gid >= 0");
  }

  @Test
  void execProcessesTalkOverOneMebibytePipes(@TempDir Path dir) throws Exception {
    // Stands in for runsc: what matters is the pipes the command line hands to it.
    Path fake = dir.resolve("runsc");
    Files.writeString(
        fake,
        "#!/bin/sh\nexec python3 -c 'import fcntl; print(fcntl.fcntl(0, 1032), fcntl.fcntl(1,"
            + " 1032))'\n");
    Files.setPosixFilePermissions(fake, PosixFilePermissions.fromString("rwx------"));
    Runsc runsc = new Runsc(fake.toString(), dir, "ptrace", "none", List.of());

    Process exec = new ProcessBuilder(runsc.command("exec", "some-sandbox")).start();
    String execPipes = new String(exec.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    Process list = new ProcessBuilder(runsc.command("list")).start();
    String listPipes = new String(list.getInputStream().readAllBytes(), StandardCharsets.UTF_8);

    assertThat(exec.waitFor()).isZero();
    assertThat(execPipes.strip()).isEqualTo("1048576 1048576");
    assertThat(list.waitFor()).isZero();
    assertThat(listPipes.strip()).as("other commands keep the default").isEqualTo("65536 65536");
  }

  @Test
  void layerDigestsMustBeSha256() {
    assertThat(LayerStore.hex("sha256:" + "a".repeat(64))).isEqualTo("a".repeat(64));
    assertThatThrownBy(() -> LayerStore.hex("sha512:abc"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("sha256:<64 lowercase hex digits>");
    assertThatThrownBy(() -> LayerStore.hex("sha256:../../etc"))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void cgroupCandidatesStayUnderTheKilnParent() throws Exception {
    assertThat(Cgroups.candidates("..")).isEmpty();
    assertThat(Cgroups.candidates("a/b")).isEmpty();
    assertThat(Cgroups.candidates("kiln-x-0123456789"))
        .isNotEmpty()
        .allSatisfy(p -> assertThat(p.toString()).endsWith("/kiln/kiln-x-0123456789"));
  }

  @Test
  void processesAreFoundByTheirRunscRoot() {
    String root = "/data/provisioner/runsc";
    assertThat(HostProcesses.mentionsRoot(List.of("runsc", "--root=" + root, "run"), root))
        .isTrue();
    assertThat(HostProcesses.mentionsRoot(List.of("runsc", "--root", root, "exec"), root)).isTrue();
    assertThat(HostProcesses.mentionsRoot(List.of("runsc-gofer", "-root=" + root), root)).isTrue();
    assertThat(HostProcesses.mentionsRoot(List.of("runsc", "--root=" + root + "2"), root))
        .isFalse();
    assertThat(HostProcesses.mentionsRoot(List.of("cat", root), root)).isFalse();
  }
}
