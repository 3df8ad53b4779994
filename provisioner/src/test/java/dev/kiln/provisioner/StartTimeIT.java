package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Measures sandbox start (until the Python init is ready) against the floor set by {@code runsc do
 * true} on this machine, in the same run and interleaved so that load from elsewhere hits both
 * alike; and the first start of an image (layer extraction included) against later ones. Prints
 * medians; run alone with {@code ./mvnw verify -pl provisioner -Dit.test=StartTimeIT}.
 */
class StartTimeIT {
  private static final int RUNS = 10;
  private static final int COLD_RUNS = 3;

  @TempDir Path dir;

  @Test
  void startTimeAgainstRunscDoAndColdAgainstWarm() throws Exception {
    SandboxImage image =
        TestImages.image(
            List.of(TestImages.baseLayer()), TestImages.python("import sys\nsys.stdin.read()"));
    Path doRoot = dir.resolve("runsc-do");
    List<Double> runscDo = new ArrayList<>();
    List<Double> runscDoPython = new ArrayList<>();
    List<Double> warm = new ArrayList<>();
    List<Double> warmBoot = new ArrayList<>();
    List<Double> exec = new ArrayList<>();
    try (RunscProvisioner p = RunscProvisioner.builder().workDir(dir.resolve("warm")).build()) {
      p.start(TestImages.spec("prime", image)).close();
      for (int i = 0; i < RUNS; i++) {
        long t0 = System.nanoTime();
        HostCommand r =
            HostCommand.run(
                List.of(
                    "runsc",
                    "--root=" + doRoot,
                    "--platform=ptrace",
                    "--network=none",
                    "do",
                    "true"),
                Duration.ofSeconds(60));
        runscDo.add(millisSince(t0));
        assertThat(r.exitCode()).as("runsc do: %s", r.diagnostics()).isZero();

        // The same floor with the host's Python started and printing a line, as the init does.
        t0 = System.nanoTime();
        r =
            HostCommand.run(
                List.of(
                    "runsc",
                    "--root=" + doRoot,
                    "--platform=ptrace",
                    "--network=none",
                    "do",
                    "/usr/bin/python3",
                    "-c",
                    "print('ready')"),
                Duration.ofSeconds(60));
        runscDoPython.add(millisSince(t0));
        assertThat(r.stdout().strip())
            .as("runsc do python3: %s", r.diagnostics())
            .isEqualTo("ready");

        t0 = System.nanoTime();
        Sandbox s = p.start(TestImages.spec("warm-" + i, image));
        warm.add(millisSince(t0));
        warmBoot.add(p.lastStartTimings().boot().toNanos() / 1e6);
        s.close();
      }
      // exec: from the call until the process's first line on stdout.
      try (Sandbox s = p.start(TestImages.spec("exec", image))) {
        for (int i = 0; i < RUNS; i++) {
          long t0 = System.nanoTime();
          SandboxProcess e = s.exec(List.of("/usr/bin/python3", "-c", "print('hi')"), List.of());
          assertThat(RunscSandbox.readLine(e.stdout())).isEqualTo("hi");
          exec.add(millisSince(t0));
          assertThat(e.exited().get(30, java.util.concurrent.TimeUnit.SECONDS)).isZero();
        }
      }
    }
    List<Double> cold = new ArrayList<>();
    List<Double> coldLayers = new ArrayList<>();
    for (int i = 0; i < COLD_RUNS; i++) {
      try (RunscProvisioner p =
          RunscProvisioner.builder().workDir(dir.resolve("cold-" + i)).build()) {
        long t0 = System.nanoTime();
        Sandbox s = p.start(TestImages.spec("cold-" + i, image));
        cold.add(millisSince(t0));
        coldLayers.add(p.lastStartTimings().layers().toNanos() / 1e6);
        s.close();
      }
    }
    System.out.printf(
        "start until ready, median of %d: RunscProvisioner.start %.0f ms (runsc run to ready %.0f"
            + " ms) vs runsc do true %.0f ms, runsc do python3 -c print() %.0f ms%n",
        RUNS, median(warm), median(warmBoot), median(runscDo), median(runscDoPython));
    System.out.printf(
        "first start with layer extraction, median of %d: %.0f ms (extraction %.0f ms) vs warm"
            + " %.0f ms%n",
        COLD_RUNS, median(cold), median(coldLayers), median(warm));
    System.out.printf(
        "exec of python3 until its first line, median of %d: %.0f ms%n", RUNS, median(exec));
    System.out.println(
        "samples: runsc do "
            + runscDo
            + "; runsc do python3 "
            + runscDoPython
            + "; warm "
            + warm
            + "; cold "
            + cold);
    assertThat(median(warm)).isLessThan(median(cold));
  }

  private static double millisSince(long t0) {
    return Math.round((System.nanoTime() - t0) / 1e5) / 10.0;
  }

  private static double median(List<Double> xs) {
    List<Double> s = xs.stream().sorted().toList();
    int n = s.size();
    return n % 2 == 1 ? s.get(n / 2) : (s.get(n / 2 - 1) + s.get(n / 2)) / 2;
  }
}
