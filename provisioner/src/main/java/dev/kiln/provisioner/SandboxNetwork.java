package dev.kiln.provisioner;

import java.io.IOException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A network for one sandbox: a network namespace of its own whose only link is a veth pair to the
 * host, a /30 of {@value #SUBNET}.0/16 — the host end has the first address, the sandbox the
 * second. Nothing is routed beyond that pair: the sandbox reaches only the host end's address
 * (where Kiln may listen, say a proxy), and the host reaches the sandbox's address (a runner
 * listener in it, as a Kubernetes pod's runners are reached). A sandbox without one has no network
 * at all.
 *
 * <p>Made with iproute2's {@code ip} as root. Link and namespace names are unique on the host, so
 * two Kiln processes never share one: a name that is taken is skipped. {@link #close} deletes the
 * namespace, and its link with it.
 */
public final class SandboxNetwork implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(SandboxNetwork.class);

  /** The first two octets of every sandbox network's addresses. */
  static final String SUBNET = "10.231";

  /** Namespace names ({@code /run/netns/kiln-net-N}); host links are {@code kiln-vN}. */
  static final String PREFIX = "kiln-net-";

  /** How many /30 networks fit in {@value #SUBNET}.0.0/16. */
  static final int MAX = 1 << 14;

  private static final Duration TIMEOUT = Duration.ofSeconds(10);

  private final int index;
  private final AtomicBoolean closed = new AtomicBoolean();

  private SandboxNetwork(int index) {
    this.index = index;
  }

  /**
   * Makes a network with the first free index from {@code from} on (a hint: callers that make many
   * spread their starting points).
   *
   * @throws IOException when {@code ip} fails for another reason than a taken name, or no index is
   *     free
   */
  public static SandboxNetwork create(int from) throws IOException {
    for (int i = 0; i < MAX; i++) {
      int index = Math.floorMod(from + i, MAX);
      HostCommand ns = ip("netns", "add", PREFIX + index);
      if (!ns.ok()) {
        if (ns.stderr().contains("File exists")) {
          continue;
        }
        throw failed("ip netns add " + PREFIX + index, ns);
      }
      SandboxNetwork n = new SandboxNetwork(index);
      try {
        n.link();
        return n;
      } catch (IOException | RuntimeException e) {
        n.close();
        if (e.getMessage() != null && e.getMessage().contains("File exists")) {
          continue;
        }
        throw e;
      }
    }
    throw new IOException(
        "no sandbox network is free: all " + MAX + " of " + SUBNET + ".0.0/16 are in use");
  }

  private void link() throws IOException {
    String ns = PREFIX + index;
    String host = hostLink();
    run("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns);
    run("ip", "addr", "add", hostAddress().getHostAddress() + "/30", "dev", host);
    run("ip", "link", "set", host, "up");
    run("ip", "-n", ns, "addr", "add", sandboxAddress().getHostAddress() + "/30", "dev", "eth0");
    run("ip", "-n", ns, "link", "set", "eth0", "up");
    run("ip", "-n", ns, "link", "set", "lo", "up");
  }

  /**
   * Deletes the sandbox networks no process uses any more that are older than {@code minAge} (what
   * a process that died left behind; a younger one may be another process's, still being set up).
   * Returns how many it deleted.
   */
  static int reapUnused(Duration minAge) throws IOException {
    Path dir = Path.of("/run/netns");
    if (!Files.isDirectory(dir)) {
      return 0;
    }
    List<Path> candidates = new ArrayList<>();
    try (DirectoryStream<Path> entries = Files.newDirectoryStream(dir, PREFIX + "*")) {
      entries.forEach(candidates::add);
    }
    int reaped = 0;
    Instant before = Instant.now().minus(minAge);
    for (Path ns : candidates) {
      String name = ns.getFileName().toString();
      HostCommand pids = ip("netns", "pids", name);
      if (!pids.ok()
          || !pids.stdout().isBlank()
          || Files.getLastModifiedTime(ns).toInstant().isAfter(before)) {
        continue;
      }
      if (ip("netns", "delete", name).ok()) {
        reaped++;
      }
    }
    return reaped;
  }

  /** Whether {@code address} is one of a sandbox network's (either end of any of them). */
  public static boolean isSandboxNetworkAddress(InetAddress address) {
    byte[] b = address.getAddress();
    return b.length == 4 && SUBNET.equals((b[0] & 0xff) + "." + (b[1] & 0xff));
  }

  /** The namespace's path, for {@code nsenter --net=}. */
  public Path namespace() {
    return Path.of("/run/netns", PREFIX + index);
  }

  /** The host link's name. */
  public String hostLink() {
    return "kiln-v" + index;
  }

  /** The host end's address: the only one the sandbox can reach. */
  public InetAddress hostAddress() {
    return address(1);
  }

  /** The sandbox's address, reachable from the host. */
  public InetAddress sandboxAddress() {
    return address(2);
  }

  private InetAddress address(int host) {
    int base = index * 4;
    try {
      return InetAddress.getByName(SUBNET + "." + (base >> 8) + "." + ((base & 0xff) + host));
    } catch (UnknownHostException e) {
      throw new IllegalStateException(e);
    }
  }

  /** Deletes the namespace and its link. Idempotent. */
  @Override
  public void close() {
    if (!closed.compareAndSet(false, true)) {
      return;
    }
    // Cleanup runs to the end even on an interrupted thread (one stopping a pool of them): a
    // namespace left behind would only go at the next provisioner's start.
    boolean interrupted = Thread.interrupted();
    try {
      HostCommand r = ip("netns", "delete", PREFIX + index);
      if (!r.ok()) {
        log.warn("deleting network namespace {}{} failed: {}", PREFIX, index, r.diagnostics());
      }
    } catch (IOException e) {
      log.warn("deleting network namespace {}{} failed: {}", PREFIX, index, e.getMessage());
    } finally {
      if (interrupted) {
        Thread.currentThread().interrupt();
      }
    }
  }

  @Override
  public String toString() {
    return PREFIX + index + " (" + sandboxAddress().getHostAddress() + ")";
  }

  private static HostCommand ip(String... args) throws IOException {
    List<String> argv = new ArrayList<>();
    argv.add("ip");
    argv.addAll(List.of(args));
    try {
      return HostCommand.run(argv, TIMEOUT);
    } catch (IOException e) {
      if (e.getMessage() != null && e.getMessage().contains("error=2,")) {
        throw new IOException(
            "cannot run 'ip' ("
                + e.getMessage()
                + "); install iproute2 (Debian package 'iproute2')",
            e);
      }
      throw e;
    }
  }

  private static void run(String... argv) throws IOException {
    HostCommand r = ip(Arrays.copyOfRange(argv, 1, argv.length));
    if (!r.ok()) {
      throw failed(String.join(" ", argv), r);
    }
  }

  private static IOException failed(String what, HostCommand r) {
    return new IOException("'" + what + "' failed: " + r.diagnostics());
  }
}
