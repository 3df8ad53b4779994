package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.channels.OverlappingFileLockException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Runs sandboxes on this machine with gVisor's {@code runsc}.
 *
 * <p>Each sandbox gets a directory {@code <workDir>/sandboxes/<id>} holding its OCI bundle and its
 * root file system: a read-only overlay mount of the image's layers, which are extracted once into
 * {@code <workDir>/layers/<hex>} and shared by every sandbox that uses them. Writes inside the
 * sandbox stay in its memory ({@code --overlay2=root:memory}), the scratch directories in sized
 * tmpfs mounts, and its processes under a process limit (see {@link OciSpec}), so that a UDF that
 * fills its disk or forks without end fails its own call. The sandbox runs under a foreground
 * {@code runsc run} whose pipes are the init's stdio; {@link #start} returns once the init printed
 * its readiness line.
 *
 * <p>A work directory belongs to one provisioner at a time (a lock file enforces it). {@link
 * Builder#build} first reaps what a previous process left there after dying without cleaning up;
 * {@link #close} stops every sandbox.
 */
public final class RunscProvisioner implements Provisioner {
  /** The user (and group) every sandboxed process runs as unless told otherwise: nobody. */
  static final int DEFAULT_USER = 65534;

  private static final Logger log = LoggerFactory.getLogger(RunscProvisioner.class);
  private static final SecureRandom RANDOM = new SecureRandom();

  /**
   * Where the time of one {@link #start} went.
   *
   * @param layers extracting the image's layers (zero when all were extracted before)
   * @param rootFs mounting the root file system and writing the bundle
   * @param boot from running runsc until the init's readiness line
   * @param total the whole start
   */
  public record StartTimings(Duration layers, Duration rootFs, Duration boot, Duration total) {}

  private final Path workDir;
  private final Path sandboxesDir;
  private final Path emptyLayer;
  private final Runsc runsc;
  private final LayerStore layers;
  private final Duration startTimeout;
  private final Duration stopGracePeriod;
  private final int uid;
  private final int gid;
  private final FileChannel lockChannel;
  private final FileLock lock;
  private final Set<RunscSandbox> live = ConcurrentHashMap.newKeySet();
  // Starts hold the read lock from extracting their layers until the root file system is mounted;
  // collecting layers takes the write lock, so it never removes a layer a start is about to mount.
  private final ReentrantReadWriteLock layerUse = new ReentrantReadWriteLock();
  private final Object lifecycle = new Object();
  private volatile boolean closed;
  private volatile StartTimings lastStart;

  private RunscProvisioner(Builder b, FileChannel lockChannel, FileLock lock) throws IOException {
    this.workDir = b.workDir.toAbsolutePath().normalize();
    this.sandboxesDir = Files.createDirectories(workDir.resolve("sandboxes"));
    this.emptyLayer = Files.createDirectories(workDir.resolve("empty"));
    this.runsc =
        new Runsc(
            b.runsc,
            Files.createDirectories(workDir.resolve("runsc")),
            b.platform,
            b.network,
            b.extraRunscFlags);
    this.layers = new LayerStore(workDir.resolve("layers"), "tar");
    this.startTimeout = b.startTimeout;
    this.stopGracePeriod = b.stopGracePeriod;
    this.uid = b.uid;
    this.gid = b.gid;
    this.lockChannel = lockChannel;
    this.lock = lock;
  }

  public static Builder builder() {
    return new Builder();
  }

  /** Extracts the image's layers (each once, shared with every sandbox that uses it). */
  @Override
  public void prepare(SandboxImage image) throws IOException, InterruptedException {
    layerUse.readLock().lock();
    try {
      layers.extractAll(image.layers());
    } finally {
      layerUse.readLock().unlock();
    }
  }

  @Override
  public Collected collect(Set<String> keepLayers, Instant unusedBefore, boolean dryRun)
      throws IOException {
    layerUse.writeLock().lock();
    try {
      Set<String> keep = new HashSet<>();
      keepLayers.forEach(d -> keep.add(LayerStore.hex(d)));
      for (RunscSandbox s : live) {
        s.spec().image().layers().forEach(l -> keep.add(LayerStore.hex(l.digest())));
      }
      LayerStore.Collected c = layers.collect(keep, unusedBefore, dryRun);
      return new Collected(c.layers(), c.bytes());
    } finally {
      layerUse.writeLock().unlock();
    }
  }

  @Override
  public Sandbox start(SandboxSpec spec) throws IOException, InterruptedException {
    Objects.requireNonNull(spec, "spec");
    if (spec.limits().gpus() > 0) {
      throw new IOException(
          "a local gVisor sandbox has no GPUs; a worker with gpu > 0 needs kiln serve --kubernetes"
              + " on a cluster with GPU nodes (gVisor with nvproxy)");
    }
    String id = newId(spec.name());
    long t0 = System.nanoTime();
    RunscSandbox sandbox;
    long t1;
    long t2;
    List<Path> layerDirs;
    // Until the sandbox is among the live ones (whose layers collection keeps), its layers are
    // held by the read lock.
    layerUse.readLock().lock();
    try {
      // Under the lock: close() takes the write lock, so a start either finished mounting and is
      // among the live sandboxes close() stops, or sees it closed here and mounts nothing.
      ensureOpen();
      layerDirs = layers.extractAll(spec.image().layers());
      t1 = System.nanoTime();
      Path dir = Files.createDirectory(sandboxesDir.resolve(id));
      Path rootfs;
      try {
        Files.createDirectory(dir.resolve(RunscSandbox.EXEC_DIR));
        rootfs = RootFs.mount(dir, layerDirs, emptyLayer);
      } catch (IOException | RuntimeException e) {
        try {
          FileTree.delete(dir);
        } catch (IOException suppressed) {
          e.addSuppressed(suppressed);
        }
        throw e;
      }
      OciSpec.ProcessSpec initProcess =
          new OciSpec.ProcessSpec(
              spec.image().argv(),
              OciSpec.mergeEnv(spec.image().env(), spec.extraEnv()),
              spec.image().workingDir(),
              uid,
              gid);
      Process host;
      try {
        OciSpec.write(
            OciSpec.config(
                id,
                initProcess,
                rootfs,
                spec.limits(),
                spec.writableDirs(),
                spec.background(),
                spec.network() != null),
            dir.resolve("config.json"));
        host =
            new ProcessBuilder(
                    runsc
                        .on(spec.network())
                        .command(spec.background(), "run", "--bundle=" + dir, id))
                .directory(dir.toFile())
                .start();
      } catch (IOException | RuntimeException e) {
        try {
          RootFs.unmount(rootfs);
          FileTree.delete(dir);
        } catch (IOException suppressed) {
          e.addSuppressed(suppressed);
        }
        throw e;
      }
      t2 = System.nanoTime();
      sandbox = new RunscSandbox(id, spec, dir, rootfs, this, host);
      synchronized (lifecycle) {
        live.add(sandbox);
      }
    } finally {
      layerUse.readLock().unlock();
    }
    if (closed) {
      sandbox.close();
      throw new IOException("the provisioner was closed while sandbox " + id + " was starting");
    }
    sandbox.awaitReady(startTimeout);
    long t3 = System.nanoTime();
    StartTimings timings =
        new StartTimings(
            Duration.ofNanos(t1 - t0),
            Duration.ofNanos(t2 - t1),
            Duration.ofNanos(t3 - t2),
            Duration.ofNanos(t3 - t0));
    lastStart = timings;
    log.info(
        "sandbox {} ({}) ready in {} ms: layers {} ms, root file system {} ms, runsc to ready {} ms"
            + " ({} layers, {} MiB, {} cpus)",
        id,
        spec.name(),
        timings.total().toMillis(),
        timings.layers().toMillis(),
        timings.rootFs().toMillis(),
        timings.boot().toMillis(),
        layerDirs.size(),
        spec.limits().memoryMiB(),
        spec.limits().cpus());
    return sandbox;
  }

  @Override
  public List<Sandbox> sandboxes() {
    List<Sandbox> running = new ArrayList<>();
    for (RunscSandbox s : live) {
      if (s.isReady()) {
        running.add(s);
      }
    }
    return List.copyOf(running);
  }

  /** How long the last successful {@link #start} took, or null before the first. */
  public Duration lastStartDuration() {
    StartTimings t = lastStart;
    return t == null ? null : t.total();
  }

  /** Where the time of the last successful {@link #start} went, or null before the first. */
  public StartTimings lastStartTimings() {
    return lastStart;
  }

  public Path workDir() {
    return workDir;
  }

  @Override
  public void close() {
    List<RunscSandbox> toStop;
    synchronized (lifecycle) {
      if (closed) {
        return;
      }
      closed = true;
    }
    // Waits for starts that are mounting a root file system: their sandboxes are live after, and
    // stopped here. Stopping only what was live before let a background start that was under way
    // leave its root file system mounted after close() returned.
    layerUse.writeLock().lock();
    try {
      synchronized (lifecycle) {
        toStop = new ArrayList<>(live);
      }
    } finally {
      layerUse.writeLock().unlock();
    }
    long t0 = System.nanoTime();
    // In parallel: the control plane calls this from a shutdown hook, where time is short.
    CompletableFuture<?>[] stops =
        toStop.stream()
            .map(s -> CompletableFuture.runAsync(s::close, r -> Thread.ofVirtual().start(r)))
            .toArray(CompletableFuture[]::new);
    CompletableFuture.allOf(stops).join();
    try {
      lock.release();
      lockChannel.close();
    } catch (IOException e) {
      log.debug("releasing the work directory lock failed", e);
    }
    log.info(
        "provisioner on {} closed: stopped {} sandboxes in {} ms",
        workDir,
        toStop.size(),
        (System.nanoTime() - t0) / 1_000_000);
  }

  boolean isClosed() {
    return closed;
  }

  void forget(RunscSandbox sandbox) {
    live.remove(sandbox);
  }

  Runsc runsc() {
    return runsc;
  }

  int uid() {
    return uid;
  }

  int gid() {
    return gid;
  }

  Duration startTimeout() {
    return startTimeout;
  }

  Duration stopGracePeriod() {
    return stopGracePeriod;
  }

  /** Layers extracted by this provisioner so far (for tests of the single-flight extraction). */
  int layerExtractions() {
    return layers.extractions();
  }

  private void ensureOpen() {
    if (closed) {
      throw new IllegalStateException("the provisioner on " + workDir + " is closed");
    }
  }

  /** {@code kiln-<name>-<random>}: readable in {@code runsc list}, unique without coordination. */
  static String newId(String name) {
    String clean = name.toLowerCase(Locale.ROOT).replaceAll("[^a-z0-9_.-]+", "-");
    clean = clean.replaceAll("^[-.]+|[-.]+$", "");
    if (clean.length() > 24) {
      clean = clean.substring(0, 24).replaceAll("[-.]+$", "");
    }
    byte[] suffix = new byte[5];
    RANDOM.nextBytes(suffix);
    return "kiln-" + (clean.isEmpty() ? "" : clean + "-") + HexFormat.of().formatHex(suffix);
  }

  /** Configuration of a {@link RunscProvisioner}; {@link #workDir} is required. */
  public static final class Builder {
    private String runsc = "runsc";
    private String platform = "ptrace";
    private String network = "none";
    private Path workDir;
    private Duration startTimeout = Duration.ofSeconds(30);
    private Duration stopGracePeriod = Duration.ofSeconds(2);
    private int uid = DEFAULT_USER;
    private int gid = DEFAULT_USER;
    private List<String> extraRunscFlags = List.of();

    private Builder() {}

    /** The runsc binary: a path, or a name looked up on PATH. Default {@code runsc}. */
    public Builder runsc(String pathOrName) {
      this.runsc = pathOrName;
      return this;
    }

    /** gVisor platform ({@code ptrace}, {@code kvm}, ...). Default {@code ptrace}. */
    public Builder platform(String platform) {
      this.platform = platform;
      return this;
    }

    /** Sandbox network ({@code none}, {@code sandbox}, {@code host}). Default {@code none}. */
    public Builder network(String network) {
      this.network = network;
      return this;
    }

    /**
     * Directory for extracted layers, sandbox bundles and runsc state (e.g. {@code
     * <data-dir>/provisioner}). Required.
     */
    public Builder workDir(Path dir) {
      this.workDir = dir;
      return this;
    }

    /** How long the init may take to print its readiness line. Default 30 s. */
    public Builder startTimeout(Duration d) {
      this.startTimeout = d;
      return this;
    }

    /** How long a stopping sandbox's init gets after stdin EOF before it is killed. Default 2 s. */
    public Builder stopGracePeriod(Duration d) {
      this.stopGracePeriod = d;
      return this;
    }

    /** The user every sandboxed process runs as. Default 65534:65534 (nobody). */
    public Builder runAsUser(int uid, int gid) {
      this.uid = uid;
      this.gid = gid;
      return this;
    }

    /** More global runsc flags, appended after Kiln's own (e.g. {@code --debug}). */
    public Builder extraRunscFlags(List<String> flags) {
      this.extraRunscFlags = List.copyOf(flags);
      return this;
    }

    /**
     * Checks the configuration, takes the work directory, reaps what an earlier process left in it,
     * and returns the provisioner.
     *
     * @throws IllegalStateException listing every setting that is missing or invalid
     * @throws IOException when runsc cannot run, the work directory is in use or cannot be cleaned
     */
    public RunscProvisioner build() throws IOException {
      List<String> problems = new ArrayList<>();
      if (workDir == null) {
        problems.add("workDir is required (e.g. <data-dir>/provisioner)");
      }
      if (runsc == null || runsc.isBlank()) {
        problems.add("runsc must name the runsc binary");
      }
      if (platform == null || platform.isBlank()) {
        problems.add("platform must be set (e.g. ptrace)");
      }
      if (network == null || network.isBlank()) {
        problems.add("network must be set (e.g. none)");
      }
      if (startTimeout == null || startTimeout.isNegative() || startTimeout.isZero()) {
        problems.add("startTimeout must be positive, got " + startTimeout);
      }
      if (stopGracePeriod == null || stopGracePeriod.isNegative()) {
        problems.add("stopGracePeriod must not be negative, got " + stopGracePeriod);
      }
      if (uid < 0 || gid < 0) {
        problems.add("runAsUser needs a uid and gid >= 0, got " + uid + ":" + gid);
      }
      if (!problems.isEmpty()) {
        throw new IllegalStateException(
            "RunscProvisioner configuration is incomplete: " + String.join("; ", problems));
      }
      Path dir = Files.createDirectories(workDir.toAbsolutePath().normalize());
      FileChannel channel =
          FileChannel.open(
              dir.resolve("lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
      FileLock lock;
      try {
        lock = channel.tryLock();
      } catch (OverlappingFileLockException e) {
        lock = null;
      }
      if (lock == null) {
        channel.close();
        throw new IOException(
            "the provisioner work directory "
                + dir
                + " is in use by another provisioner; close it, or give this one another"
                + " directory");
      }
      try {
        RunscProvisioner p = new RunscProvisioner(this, channel, lock);
        String version = p.runsc.version();
        Reaper.reap(p.runsc, p.sandboxesDir);
        p.layers.removeTemporaries();
        log.info(
            "runsc provisioner on {} ({}, platform {}, network {}, user {}:{})",
            dir,
            version,
            platform,
            network,
            uid,
            gid);
        return p;
      } catch (IOException | RuntimeException e) {
        lock.release();
        channel.close();
        throw e;
      }
    }
  }
}
