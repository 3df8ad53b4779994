package dev.kiln.provisioner;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Sandboxes in memory that start at once and stop when closed, for the pools' bookkeeping tests (no
 * gVisor there; the control plane's ITs run the pools on real runsc).
 */
final class MemoryProvisioner implements Provisioner {
  /** An image nobody reads. */
  static final SandboxImage IMAGE =
      new SandboxImage(
          List.of(
              new SandboxImage.Layer(
                  "sha256:" + "0".repeat(64),
                  "application/vnd.oci.image.layer.v1.tar",
                  java.nio.file.Path.of("never-read.tar"))),
          List.of("init"),
          List.of(),
          "/");

  final List<Sandbox> started = new CopyOnWriteArrayList<>();
  final AtomicInteger ids = new AtomicInteger();

  @Override
  public Sandbox start(SandboxSpec spec) {
    Sandbox s = new FakeSandbox("s" + ids.incrementAndGet(), spec);
    started.add(s);
    return s;
  }

  @Override
  public List<Sandbox> sandboxes() {
    return started.stream().filter(Sandbox::isRunning).toList();
  }

  @Override
  public void close() {
    started.forEach(Sandbox::close);
  }

  private record FakeSandbox(String id, SandboxSpec spec, CompletableFuture<Void> stopped)
      implements Sandbox {
    FakeSandbox(String id, SandboxSpec spec) {
      this(id, spec, new CompletableFuture<>());
    }

    @Override
    public SandboxProcess init() {
      return new FakeProcess(stopped);
    }

    @Override
    public SandboxProcess exec(List<String> argv, List<String> env) {
      return new FakeProcess(stopped);
    }

    @Override
    public boolean isRunning() {
      return !stopped.isDone();
    }

    @Override
    public void close() {
      stopped.complete(null);
    }
  }

  private record FakeProcess(CompletableFuture<Void> sandboxStopped) implements SandboxProcess {
    @Override
    public OutputStream stdin() {
      return new ByteArrayOutputStream();
    }

    @Override
    public InputStream stdout() {
      return new ByteArrayInputStream(new byte[0]);
    }

    @Override
    public InputStream stderr() {
      return new ByteArrayInputStream(new byte[0]);
    }

    @Override
    public boolean isAlive() {
      return !sandboxStopped.isDone();
    }

    @Override
    public CompletableFuture<Integer> exited() {
      return sandboxStopped.thenApply(v -> 0);
    }

    @Override
    public void kill(Duration timeout) {}

    @Override
    public void close() {}
  }
}
