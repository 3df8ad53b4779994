package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * A provisioner's process dies with SIGKILL while its sandbox runs; a new provisioner on the same
 * work directory must leave nothing of it behind.
 */
class ReapingIT {
  @TempDir Path dir;

  @ParameterizedTest(name = "runsc run killed too: {0}")
  @ValueSource(booleans = {false, true})
  void aNewProvisionerReapsWhatAKilledOneLeft(boolean killRunscToo) throws Exception {
    SandboxImage.Layer base = TestImages.baseLayer();
    Path work = dir.resolve("provisioner");
    Path log = dir.resolve("child.log");
    String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
    Process child =
        new ProcessBuilder(
                java,
                "-cp",
                System.getProperty("java.class.path"),
                HardKillTarget.class.getName(),
                work.toString(),
                base.digest(),
                base.blob().toString())
            .redirectError(log.toFile())
            .start();
    String id;
    try {
      BufferedReader out =
          new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8));
      CompletableFuture<String> line =
          CompletableFuture.supplyAsync(() -> HostState.unchecked(out::readLine));
      String started = line.get(120, TimeUnit.SECONDS);
      assertThat(started)
          .as("child output; its log: %s", Files.readString(log))
          .startsWith("started ");
      id = started.substring("started ".length());

      Optional<ProcessHandle> runscRun =
          child
              .toHandle()
              .children()
              .filter(h -> h.info().commandLine().orElse("").contains(" run "))
              .findFirst();
      assertThat(runscRun).as("the child's runsc run process").isPresent();
      child.destroyForcibly();
      assertThat(child.waitFor(30, TimeUnit.SECONDS)).isTrue();
      if (killRunscToo) {
        runscRun.get().destroyForcibly();
        runscRun.get().onExit().get(30, TimeUnit.SECONDS);
      }
    } finally {
      child.destroyForcibly();
    }

    boolean reaped = false;
    try {
      // There is something to reap: runsc still lists the container and its root is still
      // mounted. With runsc run alive the sandbox itself survived; without it, runsc's sandbox
      // process (started attached to runsc run) died with it and state, mount, directory and
      // cgroups remain.
      assertThat(HostState.containers(work)).containsExactly(id);
      assertThat(HostState.mountsUnder(work)).hasSize(1);
      System.out.printf(
          "left after SIGKILL (runsc run killed too: %b): processes %s, cgroups %s%n",
          killRunscToo, HostState.processes(work), HostState.cgroups(id));
      if (!killRunscToo) {
        assertThat(HostState.processes(work)).isNotEmpty();
      }
      assertThat(HostState.cgroups(id)).isNotEmpty();

      try (RunscProvisioner p = RunscProvisioner.builder().workDir(work).build()) {
        reaped = true;
        HostState.assertNothingLeft(work, List.of(id));
        // The extracted layers are kept for the next sandbox.
        assertThat(work.resolve("layers").resolve(LayerStore.hex(base.digest()))).isDirectory();
        assertThat(p.sandboxes()).isEmpty();
      }
    } finally {
      if (!reaped) {
        // A failed precondition must not leave a sandbox running on the machine.
        RunscProvisioner.builder().workDir(work).build().close();
      }
    }
  }
}
