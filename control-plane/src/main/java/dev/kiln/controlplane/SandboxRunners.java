package dev.kiln.controlplane;

import dev.kiln.image.BuildImage;
import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageHost;
import dev.kiln.image.ImageLayer;
import dev.kiln.image.LayerFile;
import dev.kiln.image.RunnerLayer;
import dev.kiln.provisioner.Limits;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxImage;
import dev.kiln.provisioner.SandboxPool;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.provisioner.SandboxSpec;
import dev.kiln.worker.PooledRunners;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerLauncher;
import dev.kiln.worker.RunnerProcess;
import dev.kiln.worker.TcpRunnerLauncher;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
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
  // Work at the lowest CPU priority waits while UDFs are busy: it gets longer.
  private static final Duration BACKGROUND_TIMEOUT = Duration.ofMinutes(5);
  private static final Duration POD_CONNECT_TIMEOUT = Duration.ofSeconds(10);

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
    if (sandbox.runnerEndpoint().isPresent()) {
      // A pod: its listener forks a runner per connection; the variables are the pod's already.
      return new TcpRunnerLauncher(sandbox.runnerEndpoint().get(), POD_CONNECT_TIMEOUT);
    }
    return env -> {
      List<String> all = new ArrayList<>();
      new TreeMap<>(udfEnv).forEach((k, v) -> all.add(k + "=" + v));
      all.addAll(env);
      return runner(sandbox.exec(RunnerFiles.serveCommand(), all));
    };
  }

  /**
   * How the warm pool makes a sandbox: the runner image (base and runner layer, nothing of any UDF)
   * with the server's limits, and {@code runners} pooled runners started in it.
   */
  public static SandboxPool.Recipe warmRecipe(BuiltImage runnerImage, Limits limits, int runners) {
    return pooledRecipe("warm", runnerImage, limits, runners, PooledRunners.environment());
  }

  /**
   * How a zygote of a package set is made: the set's packages image (base, wheel layers and runner
   * layer, nothing of any UDF) with the size of the UDFs that use it, and {@code runners} pooled
   * runners started in it that import {@code modules} before they say they are warm.
   */
  public static SandboxPool.Recipe zygoteRecipe(
      BuiltImage packagesImage, Limits limits, int runners, Collection<String> modules) {
    return pooledRecipe(
        "zygote", packagesImage, limits, runners, PooledRunners.environment(modules));
  }

  private static SandboxPool.Recipe pooledRecipe(
      String name, BuiltImage image, Limits limits, int runners, List<String> env) {
    return new SandboxPool.Recipe(
        new SandboxSpec(
            name,
            sandboxImage(image),
            limits,
            List.of(),
            // Where the UDF's image has its code and imports, for the runners to write them there.
            List.of(RunnerFiles.UDF_DIR, BuildImage.IMPORT_DIR)),
        PooledRunners.command(),
        env,
        runners);
  }

  /** Waits until a pooled runner started in a warm sandbox is warm. */
  public static void awaitWarm(SandboxProcess process) throws IOException, InterruptedException {
    PooledRunners.awaitWarm(runner(process), PooledRunners.WARM_TIMEOUT);
  }

  /**
   * Launches a UDF's runners in a warm sandbox: its warm runners first, new pooled ones after; each
   * is handed the files and variables the UDF's image would have ({@code codeFiles}, {@code
   * imports}, {@code imageEnv}), and the UDF's own variables (the image's and the runner's win).
   */
  public static RunnerLauncher warmLauncher(
      SandboxPool.Warm warm,
      Map<String, String> udfEnv,
      Map<String, byte[]> codeFiles,
      List<LayerFile> imports,
      Map<String, String> imageEnv) {
    List<PooledRunners.File> files = new ArrayList<>();
    codeFiles.forEach((path, bytes) -> files.add(new PooledRunners.File(path, 0644, bytes, null)));
    for (LayerFile f : imports) {
      files.add(new PooledRunners.File(f.pathInImage(), f.mode(), f.content(), f.source()));
    }
    Map<String, String> env = new TreeMap<>(udfEnv);
    env.putAll(imageEnv);
    Sandbox sandbox = warm.sandbox();
    RunnerLauncher exec =
        extra -> {
          List<String> all = new ArrayList<>(PooledRunners.environment());
          all.addAll(extra);
          return runner(sandbox.exec(PooledRunners.command(), all));
        };
    return PooledRunners.launcher(
        warm.processes().stream().map(SandboxRunners::runner).toList(),
        exec,
        new PooledRunners.Load(env, files));
  }

  /** A process in a sandbox, as the worker sees a runner. */
  public static RunnerProcess runner(SandboxProcess process) {
    return new SandboxRunner(process);
  }

  /**
   * An image as a sandbox pod runs it: pulled from the registry by {@code reference}, its runner
   * listener (listening on every address at {@code port}) as the init.
   */
  public static SandboxImage podImage(String reference, int port) {
    return SandboxImage.pulled(reference, RunnerFiles.listenCommand("0.0.0.0:" + port));
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
      public void prepareLayer(ImageLayer layer) throws IOException, InterruptedException {
        sandboxes.prepare(
            new SandboxImage(
                List.of(
                    new SandboxImage.Layer(
                        layer.digest().toString(), layer.mediaType(), layer.blob())),
                List.of(),
                List.of(),
                "/"));
      }

      @Override
      public String run(BuiltImage image, List<String> argv)
          throws IOException, InterruptedException {
        return sandboxes.runOnce(
            new SandboxSpec("probe", sandboxImage(image), PROBE_LIMITS, List.of()),
            argv,
            PROBE_TIMEOUT);
      }

      @Override
      public String runInBackground(BuiltImage image, List<String> argv)
          throws IOException, InterruptedException {
        return sandboxes.runOnce(
            new SandboxSpec("background", sandboxImage(image), PROBE_LIMITS, List.of())
                .inBackground(),
            argv,
            BACKGROUND_TIMEOUT);
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
