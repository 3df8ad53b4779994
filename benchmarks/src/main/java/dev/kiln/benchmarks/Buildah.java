package dev.kiln.benchmarks;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/** buildah with its own storage under one directory; removed (and unmounted) on close. */
final class Buildah implements AutoCloseable {
  private final Path root;
  private final Path runroot;
  private final Path context;
  private final String baseId;
  private final URI index;
  private final String pip;

  Buildah(Path dir, Path baseArchive, Path pipWheel, URI index) throws Exception {
    this.root = dir.resolve("root");
    this.runroot = dir.resolve("run");
    this.context = Files.createDirectories(dir.resolve("context"));
    this.index = index;
    this.pip = pipWheel.getFileName().toString();
    Files.copy(pipWheel, context.resolve(pip));
    List<String> lines = BuildBenchmark.run(buildah("pull", "-q", "docker-archive:" + baseArchive));
    this.baseId = lines.get(lines.size() - 1).strip();
  }

  static void ensureInstalled() throws Exception {
    if (new ProcessBuilder("sh", "-c", "command -v buildah").start().waitFor() != 0) {
      System.out.println("buildah is missing; installing Debian's buildah package");
      BuildBenchmark.run(List.of("apt-get", "install", "-y", "-q", "buildah"));
    }
  }

  /** Wall and CPU (user + system, pip included) seconds of one build. */
  record Timing(double wall, double cpu) {}

  /** Builds the image the way the reference control plane does. */
  Timing build(List<String> packages, String code, String tag) throws Exception {
    String dockerfile =
        "FROM "
            + baseId
            + "\n"
            + "COPY "
            + pip
            + " /tmp/pip.whl\n"
            + "RUN python3 /tmp/pip.whl/pip install --no-cache-dir --no-compile"
            + " --disable-pip-version-check --break-system-packages --root-user-action=ignore"
            + " --index-url "
            + index
            + " "
            + String.join(" ", packages)
            + "\n"
            + "COPY udf.py /kiln/udf/udf.py\n";
    Files.writeString(context.resolve("Dockerfile"), dockerfile);
    Files.writeString(context.resolve("udf.py"), code);
    List<String> command = new ArrayList<>(List.of("/usr/bin/time", "-f", "cpu %U %S"));
    command.addAll(
        buildah(
            "bud",
            "--layers",
            "--isolation",
            "chroot",
            "--network",
            "host",
            "-q",
            "-t",
            tag,
            context.toString()));
    long t0 = System.nanoTime();
    List<String> out = BuildBenchmark.run(command);
    double wall = BuildBenchmark.seconds(System.nanoTime() - t0);
    String[] cpu = out.get(out.size() - 1).split(" ");
    return new Timing(wall, Double.parseDouble(cpu[1]) + Double.parseDouble(cpu[2]));
  }

  private List<String> buildah(String... args) {
    List<String> command =
        new ArrayList<>(
            List.of(
                "buildah",
                "--root",
                root.toString(),
                "--runroot",
                runroot.toString(),
                "--storage-driver",
                "overlay"));
    command.addAll(List.of(args));
    return command;
  }

  @Override
  public void close() throws Exception {
    try {
      BuildBenchmark.run(buildah("rmi", "--all", "--force"));
    } finally {
      // containers/storage may keep its overlay directory mounted; leave no mount behind.
      for (String mount : mountsUnder(root.getParent())) {
        new ProcessBuilder("umount", "-l", mount).inheritIO().start().waitFor();
      }
    }
  }

  /** The mount points under {@code dir}, innermost first. */
  static List<String> mountsUnder(Path dir) throws IOException {
    List<String> out = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      String[] f = line.split(" ");
      if (f.length > 4 && f[4].startsWith(dir.toString())) {
        out.add(f[4]);
      }
    }
    Collections.reverse(out); // innermost first
    return out;
  }
}
