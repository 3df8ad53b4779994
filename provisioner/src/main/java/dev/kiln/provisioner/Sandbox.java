package dev.kiln.provisioner;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.Optional;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;

/**
 * One running gVisor sandbox. Its init process is the image's argv; more processes are started in
 * it with {@link #exec}. It ends when its init process ends or when it is closed.
 */
public interface Sandbox extends AutoCloseable {

  /** Unique id (also the runtime's container id). */
  String id();

  SandboxSpec spec();

  /** The init process (the image's argv). */
  SandboxProcess init();

  /**
   * Starts another process in the sandbox, in the same file system and limits, with the image's
   * environment plus {@code env} ({@code KEY=value}) and the image's working directory.
   *
   * @throws IOException when the sandbox is not running or the process cannot start
   */
  SandboxProcess exec(List<String> argv, List<String> env) throws IOException;

  boolean isRunning();

  /**
   * Where the sandbox's runner listener is reached, when its processes are not started with {@link
   * #exec} but one per TCP connection (a Kubernetes pod's); empty for a sandbox Kiln execs into.
   */
  default Optional<InetSocketAddress> runnerEndpoint() {
    return Optional.empty();
  }

  /**
   * Memory the sandbox uses now (its processes and gVisor's own inside its cgroup), when the
   * runtime can tell; empty otherwise.
   */
  default OptionalLong memoryBytes() {
    return OptionalLong.empty();
  }

  /**
   * Gives a sandbox started {@link SandboxSpec#background in the background} the normal CPU
   * priority, now that it has work. Does nothing for others.
   */
  default void toForeground() {}

  /** Completes when the sandbox has stopped, for whatever reason. */
  CompletableFuture<Void> stopped();

  /**
   * Stops the sandbox: ends its processes, deletes it from the runtime, and removes its root file
   * system and mounts. Idempotent.
   */
  @Override
  void close();
}
