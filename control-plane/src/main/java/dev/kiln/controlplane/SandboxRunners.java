package dev.kiln.controlplane;

import dev.kiln.image.BuiltImage;
import dev.kiln.image.ImageLayer;
import dev.kiln.image.LayerFile;
import dev.kiln.image.LayerSpec;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxImage;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.RunnerLauncher;
import dev.kiln.worker.RunnerProcess;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;

/**
 * The glue between modules that must not know each other: a built image as the provisioner runs it,
 * in-memory files as an image layer, and a sandbox process as the worker's runner.
 */
public final class SandboxRunners {
  private SandboxRunners() {}

  /** Launches runners ({@link RunnerFiles#serveCommand()}) in the sandbox. */
  public static RunnerLauncher launcher(Sandbox sandbox) {
    return env -> runner(sandbox.exec(RunnerFiles.serveCommand(), env));
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

  /** A layer of small files held in memory (path in the image → bytes), mode 0644, sorted. */
  public static LayerSpec layer(String name, Map<String, byte[]> files) {
    List<LayerFile> entries = new ArrayList<>();
    new TreeMap<>(files)
        .forEach((path, bytes) -> entries.add(LayerFile.ofBytes(path, bytes, 0644)));
    return new LayerSpec(name, entries);
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
