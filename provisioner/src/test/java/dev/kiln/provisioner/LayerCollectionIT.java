package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Collecting extracted layers with real sandboxes: a running sandbox's layers and the kept ones
 * stay, unused ones go (a dry run only counts them), and a collected layer is extracted again when
 * a sandbox needs it.
 */
class LayerCollectionIT {
  @TempDir Path dir;

  @Test
  void runningAndKeptLayersStayUnusedOnesGoAndComeBackWhenNeeded() throws Exception {
    Path work = dir.resolve("provisioner");
    RunscProvisioner p = RunscProvisioner.builder().workDir(work).build();
    List<String> ids = new ArrayList<>();
    try {
      SandboxImage.Layer base = TestImages.baseLayer();
      SandboxImage.Layer extra =
          new TestImages.LayerBuilder(dir.resolve("src")).file("opt/x", "x").build("extra");
      p.prepare(TestImages.image(List.of(base, extra), TestImages.ECHO_INIT));
      Path baseDir = work.resolve("layers").resolve(LayerStore.hex(base.digest()));
      Path extraDir = work.resolve("layers").resolve(LayerStore.hex(extra.digest()));
      Instant later = Instant.now().plusSeconds(60); // everything counts as unused

      try (Sandbox s =
          p.start(
              TestImages.spec("running", TestImages.image(List.of(base), TestImages.ECHO_INIT)))) {
        ids.add(s.id());
        Provisioner.Collected dry = p.collect(Set.of(), later, true);
        assertThat(dry.layers()).isEqualTo(1);
        assertThat(extraDir).as("a dry run removes nothing").isDirectory();

        Provisioner.Collected done = p.collect(Set.of(), later, false);
        assertThat(done.layers()).isEqualTo(1);
        assertThat(done.bytes()).isPositive();
        assertThat(extraDir).doesNotExist();
        assertThat(baseDir).as("the running sandbox's layer").isDirectory();
        SandboxProcess ok = s.exec(List.of("/usr/bin/python3", "-c", "print(1)"), List.of());
        ok.stdin().close();
        assertThat(TestImages.readAll(ok).strip()).isEqualTo("1");
      }

      assertThat(p.collect(Set.of(base.digest()), later, false).layers())
          .as("a kept layer stays")
          .isZero();
      assertThat(p.collect(Set.of(), later, false).layers()).isEqualTo(1);
      assertThat(baseDir).doesNotExist();
      try (var left = Files.list(work.resolve("layers"))) {
        assertThat(left).as("nothing half-deleted left behind").isEmpty();
      }

      try (Sandbox again =
          p.start(
              TestImages.spec(
                  "again", TestImages.image(List.of(base, extra), TestImages.ECHO_INIT)))) {
        ids.add(again.id());
        assertThat(again.isRunning()).isTrue();
        assertThat(extraDir).as("extracted again when needed").isDirectory();
      }
    } finally {
      p.close();
    }
    HostState.assertNothingLeft(work, ids);
  }
}
