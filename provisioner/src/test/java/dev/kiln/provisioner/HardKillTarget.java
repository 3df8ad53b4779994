package dev.kiln.provisioner;

import java.nio.file.Path;
import java.util.List;

/**
 * The process that {@link ReapingIT} kills with SIGKILL: it starts a sandbox (and a process in it)
 * on a work directory, prints {@code started <id>}, and waits to be killed.
 *
 * <p>Arguments: work directory, base layer digest, base layer blob.
 */
final class HardKillTarget {
  private HardKillTarget() {}

  public static void main(String[] args) throws Exception {
    Path workDir = Path.of(args[0]);
    SandboxImage.Layer base =
        new SandboxImage.Layer(args[1], TestImages.GZIP_LAYER, Path.of(args[2]));
    RunscProvisioner p = RunscProvisioner.builder().workDir(workDir).build();
    // An init that ignores stdin EOF, like a stuck UDF: the sandbox outlives this JVM.
    Sandbox s =
        p.start(
            TestImages.spec(
                "orphan",
                TestImages.image(
                    List.of(base), TestImages.python("import time\nwhile True: time.sleep(60)"))));
    s.exec(List.of("/usr/bin/python3", "-c", "import time; time.sleep(600)"), List.of());
    System.out.println("started " + s.id());
    System.out.flush();
    Thread.sleep(Long.MAX_VALUE);
  }
}
