package dev.kiln.image;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.base.SingleFlight;
import dev.kiln.cache.Digest;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What every UDF on a base image shares, once per base image digest: the runner image (the base
 * plus the runner layer), made ready on the {@link ImageHost}; and the base's Python as a {@link
 * TargetEnvironment}, read by running the resolver's probe script with the base's own {@code
 * python3} (never taken from a request) and then kept in a directory, so a restarted server does
 * not ask again.
 */
public final class BaseFacts {
  private static final Logger log = LoggerFactory.getLogger(BaseFacts.class);

  private final RunnerLayer runner;
  private final ImageHost host;
  private final Path dir;
  private final SingleFlight<String, BuiltImage> runnerImages = SingleFlight.remembering();
  private final SingleFlight<String, TargetEnvironment> pythons = SingleFlight.remembering();

  /** Facts kept under {@code dir}; images run on {@code host}. */
  public BaseFacts(RunnerLayer runner, ImageHost host, Path dir) throws IOException {
    this.runner = Objects.requireNonNull(runner, "runner");
    this.host = Objects.requireNonNull(host, "host");
    this.dir = Files.createDirectories(dir);
  }

  /**
   * The base + runner image of a runtime, built once and made ready on the host.
   *
   * @throws KilnException the build's error, or {@link ErrorCode#BASE_IMAGE_UNAVAILABLE} when the
   *     host cannot get it ready
   */
  public BuiltImage runnerImage(Runtimes.Runtime runtime)
      throws KilnException, InterruptedException {
    return runnerImages.run(
        runtime.digest(),
        () -> {
          BuiltImage image = buildRunnerImage(runtime);
          try {
            host.prepare(image);
          } catch (IOException e) {
            throw new KilnException(
                ErrorCode.BASE_IMAGE_UNAVAILABLE,
                "cannot get the layers of base image "
                    + runtime.base().reference()
                    + " ready: "
                    + e.getMessage(),
                e);
          }
          return image;
        });
  }

  private BuiltImage buildRunnerImage(Runtimes.Runtime runtime)
      throws KilnException, InterruptedException {
    String name =
        "kiln/runner:"
            + runner.version().substring(0, 16)
            + "-"
            + runtime.digest().replace("sha256:", "").substring(0, 16);
    try {
      Optional<BuiltImage> found = runtime.images().find(name);
      if (found.isPresent()) {
        return found.get();
      }
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED, "reading the image layout failed: " + e.getMessage(), e);
    }
    return runtime
        .images()
        .build(
            new ImageRequest(
                name,
                List.of(runner.layer()),
                runner.initCommand(),
                List.of(),
                runner.env(),
                "/",
                Map.of()));
  }

  /**
   * Compiles the byte code of wheel layers with the base's own Python: runs {@code argv} once in a
   * sandbox of an image of the base, these layers and the runner, and returns what it printed. The
   * image is named like a UDF's ({@code kiln/udf:pyc-...}), so it is collected like one once
   * unused; its layers are the UDF's, extracted once for both. {@code background}: at the lowest
   * CPU priority ({@link ImageHost#runInBackground}).
   */
  String compile(
      Runtimes.Runtime runtime, List<LayerSpec> wheelLayers, List<String> argv, boolean background)
      throws KilnException, IOException, InterruptedException {
    MessageDigest sha = Digest.newSha256();
    sha.update(runtime.digest().getBytes(StandardCharsets.UTF_8));
    sha.update(runner.version().getBytes(StandardCharsets.UTF_8));
    for (LayerSpec layer : wheelLayers) {
      sha.update(layer.blob().digest().toString().getBytes(StandardCharsets.UTF_8));
    }
    String name = BuildImage.IMAGE_PREFIX + "pyc-" + HexFormat.of().formatHex(sha.digest(), 0, 16);
    List<LayerSpec> layers = new ArrayList<>(wheelLayers);
    layers.add(runner.layer());
    BuiltImage image =
        runtime
            .images()
            .build(
                new ImageRequest(
                    name, layers, runner.initCommand(), List.of(), runner.env(), "/", Map.of()));
    return background ? host.runInBackground(image, argv) : host.run(image, argv);
  }

  /**
   * The base image's Python, probed once per base digest and remembered on disk.
   *
   * @throws KilnException {@link ErrorCode#BASE_IMAGE_UNAVAILABLE} when it cannot be told
   */
  public TargetEnvironment python(Runtimes.Runtime runtime)
      throws KilnException, InterruptedException {
    return pythons.run(
        runtime.digest(),
        () -> {
          try {
            return probeOrLoad(runtime);
          } catch (KilnException | IOException e) {
            throw new KilnException(
                ErrorCode.BASE_IMAGE_UNAVAILABLE,
                "cannot tell which Python the base image "
                    + runtime.base().reference()
                    + " runs: "
                    + e.getMessage(),
                e);
          }
        });
  }

  private TargetEnvironment probeOrLoad(Runtimes.Runtime runtime)
      throws KilnException, IOException, InterruptedException {
    Path file = dir.resolve(runtime.digest().replace("sha256:", "") + ".json");
    if (Files.isRegularFile(file)) {
      try {
        return TargetEnvironment.fromProbeJson(Files.readString(file, StandardCharsets.UTF_8));
      } catch (KilnException e) {
        log.warn("ignoring unreadable {}: {}", file, e.getMessage());
      }
    }
    long t0 = System.nanoTime();
    String json;
    try {
      json =
          host.run(runnerImage(runtime), List.of("python3", "-c", TargetEnvironment.probeScript()));
    } catch (IOException e) {
      throw new IOException("python3 in it failed to describe itself: " + e.getMessage(), e);
    }
    TargetEnvironment target = TargetEnvironment.fromProbeJson(json);
    Path temp = Files.createTempFile(dir, "probe", ".tmp");
    Files.writeString(temp, target.toProbeJson(), StandardCharsets.UTF_8);
    Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    log.info(
        "base image {} runs {} ({} ms to probe)",
        runtime.base().reference(),
        target.describe(),
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0));
    return target;
  }
}
