package dev.kiln.controlplane;

import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageHost;
import dev.kiln.image.ImageLayer;
import dev.kiln.image.RunnerLayer;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxImage;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerLauncher;
import dev.kiln.worker.RunnerProcess;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;

/**
 * The glue between modules that must not know each other, and nothing else: a built image as the
 * provisioner runs it, the provisioner as the image builder's host, the worker's runner as the
 * image builder's runner layer, and a sandbox process as the worker's runner.
 */
public final class SandboxRunners {
  private static final Limits PROBE_LIMITS = new Limits(256L << 20, 1.0);
  private static final Duration PROBE_TIMEOUT = Duration.ofSeconds(30);

  private SandboxRunners() {}

  /** The worker's runner, as the layer every image carries. */
  public static RunnerLayer runnerLayer() {
    return new RunnerLayer(
        RunnerFiles.runtimeFiles(),
        RunnerFiles.initCommand(),
        RunnerFiles.environment(),
        RunnerFiles.version());
  }

  /** Launches runners ({@link RunnerFiles#serveCommand()}) in the sandbox. */
  public static RunnerLauncher launcher(Sandbox sandbox) {
    return launcher(sandbox, Map.of());
  }

  /**
   * Launches runners in the sandbox with the UDF's own variables as well (the runner's own, such as
   * its memory limit, come after them and win on a clash).
   */
  public static RunnerLauncher launcher(Sandbox sandbox, Map<String, String> udfEnv) {
    return env -> {
      List<String> all = new ArrayList<>();
      new TreeMap<>(udfEnv).forEach((k, v) -> all.add(k + "=" + v));
      all.addAll(env);
      return runner(sandbox.exec(RunnerFiles.serveCommand(), all));
    };
  }

  /** A process in a sandbox, as the worker sees a runner. */
  public static RunnerProcess runner(SandboxProcess process) {
    return new SandboxRunner(process);
  }

  /** What the provisioner needs of a built image: its layer blobs and process settings. */
  public static SandboxImage sandboxImage(BuiltImage image) {
    List<SandboxImage.Layer> layers = new ArrayList<>();
    for (ImageLayer l : image.layers()) {
      layers.add(new SandboxImage.Layer(l.digest().toString(), l.mediaType(), l.blob()));
    }
    List<String> argv = new ArrayList<>(image.entrypoint());
    argv.addAll(image.cmd());
    return new SandboxImage(layers, argv, image.env(), image.workingDir());
  }

  /** The provisioner, as the host the image builder runs base images on. */
  static ImageHost host(PlaceSandbox sandboxes) {
    return new ImageHost() {
      @Override
      public void prepare(BuiltImage image) throws IOException, InterruptedException {
        sandboxes.prepare(sandboxImage(image));
      }

      @Override
      public String run(BuiltImage image, List<String> argv)
          throws IOException, InterruptedException {
        return sandboxes.runOnce(
            new SandboxSpec("probe", sandboxImage(image), PROBE_LIMITS, List.of()),
            argv,
            PROBE_TIMEOUT);
      }
    };
  }

  private record SandboxRunner(SandboxProcess process) implements RunnerProcess {
    @Override
    public OutputStream stdin() {
      return process.stdin();
    }

    @Override
    public InputStream stdout() {
      return process.stdout();
    }

    @Override
    public InputStream stderr() {
      return process.stderr();
    }

    @Override
    public boolean isAlive() {
      return process.isAlive();
    }

    @Override
    public CompletableFuture<Integer> exited() {
      return process.exited();
    }

    @Override
    public void kill() {
      CompletableFuture.runAsync(() -> process.kill(Duration.ofSeconds(5)));
    }
  }
}
