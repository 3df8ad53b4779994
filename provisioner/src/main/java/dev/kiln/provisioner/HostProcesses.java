package dev.kiln.provisioner;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Host processes found by their command line, from {@code /proc}. */
final class HostProcesses {
  private HostProcesses() {}

  /**
   * Pids of the processes (other than this one) with a runsc state root of {@code root} on their
   * command line: {@code runsc run/exec} and the sandbox and gofer processes runsc starts.
   */
  static List<Long> usingRunscRoot(Path root) {
    String abs = root.toAbsolutePath().normalize().toString();
    long self = ProcessHandle.current().pid();
    List<Long> pids = new ArrayList<>();
    try (DirectoryStream<Path> procs = Files.newDirectoryStream(Path.of("/proc"), "[0-9]*")) {
      for (Path proc : procs) {
        long pid;
        try {
          pid = Long.parseLong(proc.getFileName().toString());
        } catch (NumberFormatException e) {
          continue;
        }
        if (pid != self && mentionsRoot(commandLine(proc), abs)) {
          pids.add(pid);
        }
      }
    } catch (IOException e) {
      return pids;
    }
    return pids;
  }

  static boolean mentionsRoot(List<String> argv, String root) {
    for (int i = 0; i < argv.size(); i++) {
      String a = argv.get(i);
      if (a.equals("--root=" + root) || a.equals("-root=" + root)) {
        return true;
      }
      if ((a.equals("--root") || a.equals("-root"))
          && i + 1 < argv.size()
          && argv.get(i + 1).equals(root)) {
        return true;
      }
    }
    return false;
  }

  private static List<String> commandLine(Path proc) {
    try {
      byte[] raw = Files.readAllBytes(proc.resolve("cmdline"));
      List<String> argv = new ArrayList<>();
      int start = 0;
      for (int i = 0; i < raw.length; i++) {
        if (raw[i] == 0) {
          argv.add(new String(raw, start, i - start, StandardCharsets.UTF_8));
          start = i + 1;
        }
      }
      if (start < raw.length) {
        argv.add(new String(raw, start, raw.length - start, StandardCharsets.UTF_8));
      }
      return argv;
    } catch (IOException e) {
      // Gone already, or a kernel thread.
      return List.of();
    }
  }
}
