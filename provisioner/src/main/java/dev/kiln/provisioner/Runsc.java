package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Command lines for one runsc state root, and the short runsc commands (list, kill, delete) run to
 * completion. Every command carries the same global flags so that all of them agree on the
 * configuration the sandboxes were made with.
 */
final class Runsc {
  private static final Duration TIMEOUT = Duration.ofSeconds(30);
  private static final String SETSID = findSetsid();
  private static final String PERL = findExecutable("/usr/bin/perl", "/bin/perl");
  private static final String NICE = findExecutable("/usr/bin/nice", "/bin/nice");
  private static final String NSENTER = "nsenter";

  /**
   * Makes the process's stdin and stdout pipes 1 MiB (F_SETPIPE_SZ = 1031), then execs the rest of
   * the command line. A runner's batches cross these host pipes; at the default 64 KiB, gVisor
   * reads a 1 MiB batch in many small pieces, each a trapped system call (measured: add(BIGINT,
   * BIGINT) 15-20% more rows/s per runner with 1 MiB). Failures (a pipe-size limit) are ignored:
   * the default size works, only slower. Perl because it is on every Debian system (perl-base is
   * essential) and starts in a few milliseconds; Java itself cannot fcntl a Process's pipes.
   */
  private static final String LARGE_PIPES =
      "fcntl(STDIN, 1031, 1048576); fcntl(STDOUT, 1031, 1048576);"
          + " exec {$ARGV[0]} @ARGV or die \"exec $ARGV[0]: $!\\n\";";

  private final String binary;
  private final Path root;
  private final List<String> globalFlags;
  private final SandboxNetwork network;

  Runsc(String binary, Path root, String platform, String network, List<String> extraFlags) {
    this.binary = binary;
    this.root = root.toAbsolutePath();
    List<String> flags = new ArrayList<>();
    flags.add("--root=" + this.root);
    flags.add("--platform=" + platform);
    flags.add("--network=" + network);
    // Writes to the root file system stay in sandbox memory (charged to its memory limit) and
    // never reach the shared, extracted layers on the host.
    flags.add("--overlay2=root:memory");
    // The sandbox reports as many CPUs as its quota allows: rounded up, at least 2, at most the
    // host's.
    flags.add("--cpu-num-from-quota");
    flags.addAll(extraFlags);
    this.globalFlags = List.copyOf(flags);
    this.network = null;
  }

  private Runsc(Runsc of, SandboxNetwork network) {
    this.binary = of.binary;
    this.root = of.root;
    this.globalFlags = of.globalFlags;
    this.network = network;
  }

  /**
   * The commands of a sandbox on {@code network} (itself when null): runsc runs in the network's
   * namespace (nsenter) with {@code --network=host}, so the sandbox uses that namespace's
   * interfaces through the host kernel and sees nothing else of the host's network. Every command
   * for such a sandbox runs there: runsc reaches a sandbox through an abstract Unix socket, which
   * belongs to a network namespace. ({@code --network=sandbox}, gVisor's own network stack, is what
   * one would want; the runsc of Debian bookworm refuses it in any namespace on newer kernels,
   * taking every namespace for the host's.)
   */
  Runsc on(SandboxNetwork network) {
    return network == null ? this : new Runsc(this, network);
  }

  private static String findSetsid() {
    return findExecutable("/usr/bin/setsid", "/bin/setsid");
  }

  private static String findExecutable(String... candidates) {
    for (String p : candidates) {
      if (java.nio.file.Files.isExecutable(Path.of(p))) {
        return p;
      }
    }
    return null;
  }

  Path root() {
    return root;
  }

  /**
   * {@code runsc <global flags> <subcommand...>}. The long-lived {@code run} and {@code exec}
   * processes start in a session of their own (setsid), so a Ctrl-C in the terminal of {@code kiln
   * serve} reaches only Kiln, which then stops its sandboxes in order. {@code exec} processes get 1
   * MiB stdin and stdout pipes (see {@link #LARGE_PIPES}).
   */
  List<String> command(String... subcommand) {
    return command(false, subcommand);
  }

  /**
   * As {@link #command(String...)}; in the {@code background} (a sandbox started ahead of need, and
   * the processes started in it before it is taken) at the least CPU priority (nice 19). The
   * sandbox's own processes soon sit in a cgroup with the least CPU shares; this covers the host
   * side of starting them: runsc's command line, the helpers it goes through, and the sandbox's
   * boot before it joins that cgroup. Once in the cgroup, a sandbox taken into the foreground gets
   * normal shares, and the nice value of its processes, all alike, weighs only among themselves.
   */
  List<String> command(boolean background, String... subcommand) {
    List<String> argv = new ArrayList<>();
    if (background && NICE != null) {
      argv.addAll(List.of(NICE, "-n", "19"));
    }
    if (SETSID != null
        && subcommand.length > 0
        && (subcommand[0].equals("run") || subcommand[0].equals("exec"))) {
      argv.add(SETSID);
    }
    if (PERL != null && subcommand.length > 0 && subcommand[0].equals("exec")) {
      argv.addAll(List.of(PERL, "-e", LARGE_PIPES));
    }
    if (network != null) {
      argv.addAll(List.of(NSENTER, "--net=" + network.namespace()));
    }
    argv.add(binary);
    argv.addAll(globalFlags);
    if (network != null) {
      argv.add("--network=host"); // the last of a flag given twice wins
    }
    argv.addAll(Arrays.asList(subcommand));
    return argv;
  }

  /** {@code runsc --version}; fails with advice when runsc cannot run at all. */
  String version() throws IOException {
    HostCommand r;
    try {
      r = HostCommand.run(List.of(binary, "--version"), TIMEOUT);
    } catch (IOException e) {
      throw new IOException(
          "cannot run '"
              + binary
              + "' ("
              + e.getMessage()
              + "); install gVisor (Debian package 'runsc') or set the runsc path",
          e);
    }
    if (!r.ok()) {
      throw new IOException("'" + binary + " --version' failed: " + r.diagnostics());
    }
    return r.stdout().lines().findFirst().orElse("").strip();
  }

  /** Ids of the containers runsc knows under this root. */
  List<String> list() throws IOException {
    HostCommand r = HostCommand.run(command("list", "-quiet"), TIMEOUT);
    if (!r.ok()) {
      throw new IOException("'runsc list' under " + root + " failed: " + r.diagnostics());
    }
    return r.stdout().lines().map(String::strip).filter(s -> !s.isEmpty()).toList();
  }

  /** Sends SIGKILL to the container's init (and so ends the sandbox); false when that failed. */
  boolean kill(String id) throws IOException {
    return HostCommand.run(command("kill", id, "KILL"), TIMEOUT).ok();
  }

  /** Sends SIGKILL to one process of the container, by its pid inside the sandbox. */
  boolean killProcess(String id, int sandboxPid) throws IOException {
    return HostCommand.run(
            command("kill", "--pid", Integer.toString(sandboxPid), id, "KILL"), TIMEOUT)
        .ok();
  }

  /** Deletes the container, stopping it first if needed; succeeds when it does not exist. */
  HostCommand delete(String id) throws IOException {
    return delete(id, false);
  }

  /** As {@link #delete(String)}, at the least CPU priority in the {@code background}. */
  HostCommand delete(String id, boolean background) throws IOException {
    return HostCommand.run(command(background, "delete", "--force", id), TIMEOUT);
  }
}
