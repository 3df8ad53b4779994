package dev.kiln.controlplane;

import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageBuildException;
import dev.kiln.image.ImageBuilder;
import dev.kiln.image.ImageRequest;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.Provisioner;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.resolver.SpecException;
import dev.kiln.resolver.TargetEnvironment;
import dev.kiln.worker.RunnerFiles;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What every UDF on a base image shares: the runner image (base + runner layer) with its layers
 * extracted, and the base's Python as {@link TargetEnvironment} — read by running the resolver's
 * probe script with the base's own python3 in a sandbox (never taken from the request), once per
 * base image digest and then kept in the data directory.
 */
final class RuntimeProbe {
  private static final Logger log = LoggerFactory.getLogger(RuntimeProbe.class);

  private final Provisioner provisioner;
  private final Path cacheDir;
  private final ConcurrentHashMap<String, CompletableFuture<BuiltImage>> runnerImages =
      new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, CompletableFuture<TargetEnvironment>> targets =
      new ConcurrentHashMap<>();

  RuntimeProbe(Provisioner provisioner, Path cacheDir) throws IOException {
    this.provisioner = provisioner;
    this.cacheDir = cacheDir;
    Files.createDirectories(cacheDir);
  }

  /** The base + runner image of a runtime, built once and with its layers extracted. */
  BuiltImage runnerImage(Runtimes.Runtime runtime) throws Exception {
    CompletableFuture<BuiltImage> mine = new CompletableFuture<>();
    CompletableFuture<BuiltImage> f = runnerImages.putIfAbsent(runtime.digest(), mine);
    if (f == null) {
      f = mine;
      try {
        BuiltImage image = buildRunnerImage(runtime.images(), runtime.digest());
        provisioner.prepare(SandboxRunners.sandboxImage(image));
        mine.complete(image);
      } catch (Exception e) {
        runnerImages.remove(runtime.digest(), mine);
        mine.completeExceptionally(e);
      }
    }
    return join(f);
  }

  private static BuiltImage buildRunnerImage(ImageBuilder images, String baseDigest)
      throws IOException, ImageBuildException, InterruptedException {
    String name =
        "kiln/runner:"
            + RunnerFiles.version().substring(0, 16)
            + "-"
            + baseDigest.replace("sha256:", "").substring(0, 16);
    Optional<BuiltImage> found = images.find(name);
    if (found.isPresent()) {
      return found.get();
    }
    return images.build(
        new ImageRequest(
            name,
            List.of(SandboxRunners.layer("kiln-runner", RunnerFiles.runtimeFiles())),
            RunnerFiles.initCommand(),
            List.of(),
            RunnerFiles.environment(),
            "/",
            Map.of()));
  }

  /** The base image's Python, probed once per base digest and remembered on disk. */
  TargetEnvironment target(Runtimes.Runtime runtime) throws Exception {
    CompletableFuture<TargetEnvironment> mine = new CompletableFuture<>();
    CompletableFuture<TargetEnvironment> f = targets.putIfAbsent(runtime.digest(), mine);
    if (f == null) {
      f = mine;
      try {
        mine.complete(probeOrLoad(runtime));
      } catch (Exception e) {
        targets.remove(runtime.digest(), mine);
        mine.completeExceptionally(e);
      }
    }
    return join(f);
  }

  private TargetEnvironment probeOrLoad(Runtimes.Runtime runtime) throws Exception {
    Path file = cacheDir.resolve(runtime.digest().replace("sha256:", "") + ".json");
    if (Files.isRegularFile(file)) {
      try {
        return TargetEnvironment.fromProbeJson(Files.readString(file, StandardCharsets.UTF_8));
      } catch (SpecException e) {
        log.warn("ignoring unreadable {}: {}", file, e.getMessage());
      }
    }
    long t0 = System.nanoTime();
    String json = probe(runtime);
    TargetEnvironment target = TargetEnvironment.fromProbeJson(json);
    Path temp = Files.createTempFile(cacheDir, "probe", ".tmp");
    Files.writeString(temp, target.toProbeJson(), StandardCharsets.UTF_8);
    Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    log.info(
        "base image {} runs {} ({} ms to probe)",
        runtime.base().reference(),
        target.describe(),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    return target;
  }

  /** Runs the probe script with the base's python3 in a throwaway sandbox; returns its JSON. */
  private String probe(Runtimes.Runtime runtime) throws Exception {
    BuiltImage image = runnerImage(runtime);
    try (Sandbox sandbox =
            provisioner.start(
                new SandboxSpec(
                    "probe",
                    SandboxRunners.sandboxImage(image),
                    new Limits(256L << 20, 1.0),
                    List.of()));
        SandboxProcess p =
            sandbox.exec(List.of("python3", "-c", TargetEnvironment.probeScript()), List.of())) {
      p.stdin().close();
      CompletableFuture<byte[]> err = CompletableFuture.supplyAsync(() -> readAll(p.stderr()));
      byte[] out = p.stdout().readAllBytes();
      int status;
      try {
        status = p.exited().get(30, TimeUnit.SECONDS);
      } catch (TimeoutException e) {
        throw new IOException("the Python probe did not finish within 30 s", e);
      }
      if (status != 0) {
        throw new IOException(
            "python3 in base image "
                + runtime.base().reference()
                + " failed to describe itself (exit "
                + status
                + "): "
                + new String(err.get(5, TimeUnit.SECONDS), StandardCharsets.UTF_8).strip());
      }
      return new String(out, StandardCharsets.UTF_8);
    }
  }

  private static byte[] readAll(java.io.InputStream in) {
    try {
      return in.readAllBytes();
    } catch (IOException e) {
      return new byte[0];
    }
  }

  private static <T> T join(CompletableFuture<T> f) throws Exception {
    try {
      return f.get();
    } catch (ExecutionException e) {
      if (e.getCause() instanceof Exception ex) {
        throw ex;
      }
      throw new CompletionException(e.getCause());
    }
  }
}
