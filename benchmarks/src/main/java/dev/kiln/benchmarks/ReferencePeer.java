package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.KilnConfig;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * The peer of {@link ColdStartBenchmark} for issue 12: what Databend's reference control plane does
 * for a new UDF, request to first correct result, on the same machine in the same run.
 *
 * <ol>
 *   <li><b>build</b>: a Containerfile {@code FROM} the base image, {@code pip install
 *       --no-cache-dir} of the UDF's packages from the local PyPI mirror over HTTP (the base has no
 *       pip: it runs from the mirror's newest pip wheel, as in {@link Buildah}), {@code COPY} of
 *       the code; {@code buildah bud --isolation chroot --network host} with overlay storage,
 *       without {@code --layers} so nothing of an earlier build is reused. pip keeps its other
 *       defaults (it compiles {@code .pyc} files, as a reference build would);
 *   <li><b>export</b>: the image's root file system for runsc, {@code buildah from} + {@code
 *       buildah mount} (the cheapest way on one host: no copy), and the image's config ({@code
 *       buildah inspect}) for the process's environment;
 *   <li><b>sandbox + first result</b>: an OCI bundle as {@code runsc spec} writes it over that
 *       root, whose process imports the code and prints the handler's result on 41; {@code runsc
 *       --platform=ptrace --network=none run} until it exits; its output is checked.
 * </ol>
 *
 * <p>The base image is imported into buildah's storage once, untimed (Kiln's base is extracted at
 * warm-up too). Every run uses its own image, container and sandbox names, all removed afterwards,
 * also when a run fails.
 */
final class ReferencePeer implements AutoCloseable {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String X_PLUS_1 = "def plus_one(x):\n    return x + 1\n";
  private static final String NUMPY_PANDAS =
      "import numpy as np\n"
          + "import pandas as pd\n"
          + "def plus_one(x):\n"
          + "    return int(pd.Series(np.array([x], dtype=np.int64)).sum()) + 1\n";
  private static final String EXPECTED = "42"; // plus_one(41)

  private final Path dir;
  private String baseId;
  private final URI index;
  private final Path pipWheel;
  private final List<String> containers = new ArrayList<>();
  private final List<String> sandboxes = new ArrayList<>();
  private int seq;

  /** The phases of one run, in ms. */
  record Run(double build, double export, double sandbox) {
    double total() {
      return build + export + sandbox;
    }
  }

  private ReferencePeer(Path dir, URI index, Path pipWheel) {
    this.dir = dir;
    this.index = index;
    this.pipWheel = pipWheel;
  }

  /** Imports the base image into buildah's storage (untimed, as a running server has it). */
  private void importBase(Path baseArchive) throws Exception {
    baseId = last(BuildBenchmark.run(buildah("pull", "-q", "docker-archive:" + baseArchive)));
  }

  /**
   * {@code runs} runs of the x+1 UDF and, with a mirror, of the numpy + pandas UDF; the JSON holds
   * each one's runs and why one was skipped ({@code skipped}).
   */
  static ObjectNode run(Path mirror, int runs) throws Exception {
    ObjectNode report = JSON.createObjectNode();
    if (new ProcessBuilder("sh", "-c", "command -v buildah").start().waitFor() != 0) {
      report.put("skipped", "buildah is not installed");
      System.out.println("reference peer: skipped, buildah is not installed");
      return report;
    }
    boolean packages = Files.isDirectory(mirror.resolve("simple"));
    MirrorServer server = packages ? MirrorServer.start(mirror) : null;
    Path dir = Files.createTempDirectory("kiln-bench-reference-");
    try (ReferencePeer peer =
        new ReferencePeer(
            dir,
            packages ? server.uri("simple/") : null,
            packages ? BuildBenchmark.newestPipWheel(mirror.resolve("files")) : null)) {
      peer.importBase(Path.of(KilnConfig.defaultBaseImage()));
      List<Run> plain = new ArrayList<>();
      List<Run> numpyPandas = new ArrayList<>();
      for (int i = 0; i < runs; i++) {
        plain.add(peer.measure(X_PLUS_1, List.of()));
        if (packages) {
          numpyPandas.add(peer.measure(NUMPY_PANDAS, List.of("numpy", "pandas")));
        }
      }
      report.set("x_plus_1", summary(plain));
      report.set(
          "numpy_pandas",
          packages
              ? summary(numpyPandas)
              : JSON.createObjectNode().put("skipped", "no local PyPI mirror at " + mirror));
    } finally {
      if (server != null) {
        server.stop();
      }
      BuildBenchmark.deleteTree(dir);
    }
    return report;
  }

  /** The rows {@code reference: x+1} and {@code reference: numpy+pandas} of {@link #run}. */
  static void print(ObjectNode report) {
    if (report.has("skipped")) {
      System.out.println("reference: skipped, " + report.get("skipped").asText());
      return;
    }
    row("reference: x+1", report.get("x_plus_1"));
    row("reference: numpy+pandas", report.get("numpy_pandas"));
  }

  private static void row(String name, JsonNode n) {
    if (n.has("skipped")) {
      System.out.printf("%-24s skipped, %s%n", name, n.get("skipped").asText());
      return;
    }
    System.out.printf(
        "%-24s request -> first correct result median %.0f ms (%.0f–%.0f): build %.0f ms,"
            + " export %.0f ms, sandbox + first result %.0f ms (buildah bud + mount, runsc run;"
            + " medians)%n",
        name,
        n.get("total_median_ms").asDouble(),
        n.get("total_min_ms").asDouble(),
        n.get("total_max_ms").asDouble(),
        n.get("build_median_ms").asDouble(),
        n.get("export_median_ms").asDouble(),
        n.get("sandbox_median_ms").asDouble());
  }

  /** Medians of each phase, min and max of the total, and every run. */
  private static ObjectNode summary(List<Run> runs) {
    ObjectNode n = JSON.createObjectNode();
    List<Double> totals = runs.stream().map(Run::total).toList();
    n.put("total_median_ms", ColdStartBenchmark.percentile(totals, 50));
    n.put("total_min_ms", Collections.min(totals));
    n.put("total_max_ms", Collections.max(totals));
    n.put(
        "build_median_ms",
        ColdStartBenchmark.percentile(runs.stream().map(Run::build).toList(), 50));
    n.put(
        "export_median_ms",
        ColdStartBenchmark.percentile(runs.stream().map(Run::export).toList(), 50));
    n.put(
        "sandbox_median_ms",
        ColdStartBenchmark.percentile(runs.stream().map(Run::sandbox).toList(), 50));
    ArrayNode all = n.putArray("runs");
    for (Run r : runs) {
      all.addObject()
          .put("build_ms", r.build())
          .put("export_ms", r.export())
          .put("sandbox_ms", r.sandbox())
          .put("total_ms", r.total());
    }
    return n;
  }

  /**
   * One run of {@code plus_one} with {@code packages}: the first result must be {@link #EXPECTED}.
   */
  Run measure(String code, List<String> packages) throws Exception {
    String name = "kiln-reference-" + ProcessHandle.current().pid() + "-" + seq++;
    Path context = Files.createDirectories(dir.resolve(name));
    Path bundle = Files.createDirectories(dir.resolve(name + "-bundle"));
    StringBuilder containerfile = new StringBuilder("FROM " + baseId + "\n");
    if (!packages.isEmpty()) {
      Files.copy(pipWheel, context.resolve("pip.whl"));
      containerfile
          .append("COPY pip.whl /tmp/pip.whl\n")
          .append("RUN python3 /tmp/pip.whl/pip install --no-cache-dir")
          .append(" --disable-pip-version-check --break-system-packages --root-user-action=ignore")
          .append(" --index-url ")
          .append(index)
          .append(' ')
          .append(String.join(" ", packages))
          .append(" && rm /tmp/pip.whl\n");
    }
    containerfile.append("COPY udf.py /kiln/udf/udf.py\n");
    Files.writeString(context.resolve("Containerfile"), containerfile);
    Files.writeString(context.resolve("udf.py"), code);
    String container = null;
    boolean started = false;
    try {
      long t0 = System.nanoTime();
      BuildBenchmark.run(
          buildah(
              "bud",
              "--isolation",
              "chroot",
              "--network",
              "host",
              "-q",
              "-t",
              name,
              "-f",
              context.resolve("Containerfile").toString(),
              context.toString()));
      long t1 = System.nanoTime();
      container = last(BuildBenchmark.run(buildah("from", "-q", "--pull=false", name)));
      containers.add(container);
      String rootfs = last(BuildBenchmark.run(buildah("mount", container)));
      JsonNode config =
          JSON.readTree(
                  String.join(
                      "\n", BuildBenchmark.run(buildah("inspect", "--type", "image", name))))
              .path("OCIv1")
              .path("config");
      long t2 = System.nanoTime();
      writeSpec(bundle, rootfs, config);
      sandboxes.add(name);
      started = true;
      String printed = runsc(bundle, name);
      long t3 = System.nanoTime();
      if (!printed.equals(EXPECTED)) {
        throw new IllegalStateException(
            "reference sandbox printed " + printed + ", not " + EXPECTED);
      }
      Run run =
          new Run(
              ColdStartBenchmark.ms(t1 - t0),
              ColdStartBenchmark.ms(t2 - t1),
              ColdStartBenchmark.ms(t3 - t2));
      System.out.printf(
          "reference run (%s): %.0f ms (build %.0f, export %.0f, sandbox + first result %.0f)%n",
          packages.isEmpty() ? "x+1" : String.join("+", packages),
          run.total(),
          run.build(),
          run.export(),
          run.sandbox());
      return run;
    } finally {
      if (started) {
        deleteSandbox(name);
      }
      if (container != null) {
        removeContainer(container);
      }
      quietly(buildah("rmi", "--force", name));
      BuildBenchmark.deleteTree(context);
      BuildBenchmark.deleteTree(bundle);
    }
  }

  /** {@code config.json} as {@code runsc spec} writes it, over {@code rootfs}, running the UDF. */
  private static void writeSpec(Path bundle, String rootfs, JsonNode image) throws IOException {
    ObjectNode spec = JSON.createObjectNode();
    spec.put("ociVersion", "1.0.0");
    ObjectNode process = spec.putObject("process");
    process.put("terminal", false);
    process.putObject("user").put("uid", 0).put("gid", 0);
    process
        .putArray("args")
        .add("/usr/bin/python3")
        .add("-c")
        .add(
            "import sys; sys.path.insert(0, '/kiln/udf'); import udf;"
                + " print(udf.plus_one(41))");
    ArrayNode env = process.putArray("env");
    image.path("Env").forEach(env::add);
    if (env.isEmpty()) {
      env.add("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    }
    String cwd = image.path("WorkingDir").asText("");
    process.put("cwd", cwd.isEmpty() ? "/" : cwd);
    ObjectNode caps = process.putObject("capabilities");
    for (String set : List.of("bounding", "effective", "inheritable", "permitted")) {
      caps.putArray(set).add("CAP_AUDIT_WRITE").add("CAP_KILL").add("CAP_NET_BIND_SERVICE");
    }
    process
        .putArray("rlimits")
        .addObject()
        .put("type", "RLIMIT_NOFILE")
        .put("hard", 1024)
        .put("soft", 1024);
    spec.putObject("root").put("path", rootfs).put("readonly", false);
    spec.put("hostname", "runsc");
    ArrayNode mounts = spec.putArray("mounts");
    mounts.addObject().put("destination", "/proc").put("type", "proc").put("source", "proc");
    mounts.addObject().put("destination", "/dev").put("type", "tmpfs").put("source", "tmpfs");
    mounts
        .addObject()
        .put("destination", "/sys")
        .put("type", "sysfs")
        .put("source", "sysfs")
        .set("options", JSON.createArrayNode().add("nosuid").add("noexec").add("nodev").add("ro"));
    ArrayNode namespaces = spec.putObject("linux").putArray("namespaces");
    for (String ns : List.of("pid", "network", "ipc", "uts", "mount")) {
      namespaces.addObject().put("type", ns);
    }
    JSON.writeValue(bundle.resolve("config.json").toFile(), spec);
  }

  /** {@code runsc run} of the bundle until it exits; the last line it printed on stdout. */
  private String runsc(Path bundle, String id) throws Exception {
    Path stderr = bundle.resolve("stderr");
    Process p =
        new ProcessBuilder(runscCommand("run", "--bundle=" + bundle, id))
            .redirectError(stderr.toFile())
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new IOException("runsc run " + id + " did not finish in 120 s");
    }
    if (p.exitValue() != 0) {
      throw new IOException(
          "runsc run " + id + " failed (" + p.exitValue() + "): " + out + Files.readString(stderr));
    }
    List<String> lines = out.strip().lines().toList();
    return lines.isEmpty() ? "" : lines.get(lines.size() - 1).strip();
  }

  private List<String> runscCommand(String... sub) {
    List<String> argv =
        new ArrayList<>(
            List.of(
                "runsc",
                "--root=" + dir.resolve("runsc-state"),
                "--platform=ptrace",
                "--network=none"));
    argv.addAll(List.of(sub));
    return argv;
  }

  private List<String> buildah(String... args) {
    List<String> command =
        new ArrayList<>(
            List.of(
                "buildah",
                "--root",
                dir.resolve("root").toString(),
                "--runroot",
                dir.resolve("run").toString(),
                "--storage-driver",
                "overlay"));
    command.addAll(List.of(args));
    return command;
  }

  private void deleteSandbox(String id) {
    quietly(runscCommand("delete", "--force", id));
    sandboxes.remove(id);
  }

  private void removeContainer(String container) {
    quietly(buildah("umount", container));
    quietly(buildah("rm", container));
    containers.remove(container);
  }

  /** Everything left by a failed run, the base image, and any mount under the work directory. */
  @Override
  public void close() throws Exception {
    for (String id : List.copyOf(sandboxes)) {
      deleteSandbox(id);
    }
    for (String c : List.copyOf(containers)) {
      removeContainer(c);
    }
    quietly(buildah("rm", "--all"));
    quietly(buildah("rmi", "--all", "--force"));
    for (String mount : Buildah.mountsUnder(dir)) {
      quietly(List.of("umount", "-l", mount));
    }
  }

  /** Runs a clean-up command; a failure is printed, not thrown, so the others still run. */
  private static void quietly(List<String> command) {
    try {
      BuildBenchmark.run(command);
    } catch (Exception e) {
      System.out.println("reference peer clean-up: " + e.getMessage());
    }
  }

  private static String last(List<String> lines) {
    return lines.get(lines.size() - 1).strip();
  }
}
