package dev.kiln.provisioner.kubernetes;

import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxProcess;
import dev.kiln.provisioner.SandboxSpec;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * One sandbox pod of a {@link UdfWorker}, as the pipeline sees a sandbox: its runners are reached
 * over TCP at {@link #runnerEndpoint} (the pod's runner listener forks one per connection), not
 * started with exec. It stops when its pod goes away or stops being ready; closing it gives the pod
 * back (this replica no longer holds it, and claims one pod fewer).
 */
final class PodSandbox implements Sandbox {
  private final String podName;
  private final String namespace;
  private final String worker;
  private final SandboxSpec spec;
  private final InetSocketAddress endpoint;
  private final KubernetesProvisioner owner;
  private final CompletableFuture<Void> stopped = new CompletableFuture<>();
  private final SandboxProcess lifetime = new Lifetime();

  /**
   * {@link #STARTING} until {@link KubernetesProvisioner#start} hands it out, then {@link #LIVE};
   * {@link #LOST_STARTING} when its pod went before that (the start, which owns the claim, takes
   * another pod).
   */
  private final AtomicInteger state = new AtomicInteger(STARTING);

  private static final int STARTING = 0;
  private static final int LIVE = 1;
  private static final int LOST_STARTING = 2;

  PodSandbox(
      String podName,
      String namespace,
      String worker,
      SandboxSpec spec,
      InetSocketAddress endpoint,
      KubernetesProvisioner owner) {
    this.podName = podName;
    this.namespace = namespace;
    this.worker = worker;
    this.spec = spec;
    this.endpoint = endpoint;
    this.owner = owner;
  }

  String podName() {
    return podName;
  }

  String namespace() {
    return namespace;
  }

  String worker() {
    return worker;
  }

  @Override
  public String id() {
    return namespace + "/" + podName;
  }

  @Override
  public SandboxSpec spec() {
    return spec;
  }

  /**
   * The pod's lifetime, standing for its init: Kiln does not hold a pod's processes (their output
   * is the pod's log, {@code kubectl logs}), so its streams are empty and it ends when the pod
   * does.
   */
  @Override
  public SandboxProcess init() {
    return lifetime;
  }

  @Override
  public SandboxProcess exec(List<String> argv, List<String> env) throws IOException {
    throw new IOException(
        "pod "
            + id()
            + " runs no processes Kiln starts: its runners are reached over TCP at "
            + endpoint.getHostString()
            + ":"
            + endpoint.getPort());
  }

  @Override
  public Optional<InetSocketAddress> runnerEndpoint() {
    return Optional.of(endpoint);
  }

  @Override
  public boolean isRunning() {
    return !stopped.isDone();
  }

  @Override
  public CompletableFuture<Void> stopped() {
    return stopped;
  }

  /** The pod went away or stopped being ready. */
  void lost() {
    stopped.complete(null);
  }

  /** The start hands it out; false when its pod went meanwhile ({@link #loseWhileStarting}). */
  boolean finishStarting() {
    return state.compareAndSet(STARTING, LIVE);
  }

  /** Its pod went before the start handed it out; false when it was handed out already. */
  boolean loseWhileStarting() {
    return state.compareAndSet(STARTING, LOST_STARTING);
  }

  @Override
  public void close() {
    if (stopped.complete(null)) {
      owner.release(this);
    }
  }

  private final class Lifetime implements SandboxProcess {
    @Override
    public OutputStream stdin() {
      return OutputStream.nullOutputStream();
    }

    @Override
    public InputStream stdout() {
      return InputStream.nullInputStream();
    }

    @Override
    public InputStream stderr() {
      return InputStream.nullInputStream();
    }

    @Override
    public boolean isAlive() {
      return isRunning();
    }

    @Override
    public CompletableFuture<Integer> exited() {
      return stopped.thenApply(v -> 0);
    }

    @Override
    public void kill(Duration timeout) {
      PodSandbox.this.close();
    }

    @Override
    public void close() {
      PodSandbox.this.close();
    }
  }
}
