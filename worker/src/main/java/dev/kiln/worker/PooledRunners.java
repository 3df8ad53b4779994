package dev.kiln.worker;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Deque;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentLinkedDeque;
import java.util.regex.Pattern;

/**
 * Runners started before their UDF is known ({@code kiln_runner.py pooled}, PROTOCOL.md): each
 * imports what every UDF needs, says WAITING, and is then handed one UDF's files and environment in
 * a LOAD frame. A warm sandbox's runners are started this way ahead of need, so a new UDF placed in
 * it waits for neither a sandbox nor a runner start.
 */
public final class PooledRunners {
  /** How long a warm sandbox's runners may take to be warm. */
  public static final Duration WARM_TIMEOUT = Duration.ofSeconds(30);

  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern MODULE = Pattern.compile("[A-Za-z_][A-Za-z0-9_]*");

  private PooledRunners() {}

  /** The command of a pooled runner. */
  public static List<String> command() {
    return List.of("python3", RunnerFiles.RUNNER_PATH, "pooled");
  }

  /**
   * The variables a pooled runner starts with: those the runner reads only when its process starts
   * (glibc's arena count, see {@code RunnerSlots}), since a LOAD comes too late for them.
   */
  public static List<String> environment() {
    return List.of("MALLOC_ARENA_MAX=2");
  }

  /**
   * The variables of a pooled runner that imports {@code modules} before it says WAITING (a sandbox
   * kept ready with one lock's packages). A module that fails to import is skipped.
   */
  public static List<String> environment(Collection<String> modules) {
    for (String m : modules) {
      if (!MODULE.matcher(m).matches()) {
        throw new IllegalArgumentException("not a Python module name: '" + m + "'");
      }
    }
    if (modules.isEmpty()) {
      return environment();
    }
    List<String> env = new ArrayList<>(environment());
    env.add("KILN_PRELOAD=" + String.join(",", modules));
    return env;
  }

  /**
   * Whether a UDF can be handed a runner that imported {@code modules} before the UDF was known and
   * see what a runner started for it alone would: it sets no variables of its own (a package may
   * read them when it is imported, e.g. a BLAS library's thread count), and none of its imports can
   * shadow one of the modules (an archive may hold any module; a file or directory named like one
   * would be found first).
   */
  public static boolean preloadFits(
      Map<String, String> udfEnv, List<String> importNames, Collection<String> modules) {
    if (!udfEnv.isEmpty()) {
      return false;
    }
    for (String name : importNames) {
      String lower = name.toLowerCase(Locale.ROOT);
      if (lower.endsWith(".zip") || lower.endsWith(".whl") || lower.endsWith(".egg")) {
        return false;
      }
      int dot = name.indexOf('.');
      if (modules.contains(dot < 0 ? name : name.substring(0, dot))) {
        return false;
      }
    }
    return true;
  }

  /**
   * One file a LOAD writes: its absolute path in the sandbox, mode, and content (in memory, or a
   * host file read when the LOAD is sent).
   */
  public record File(String path, int mode, byte[] content, Path source) {
    public File {
      Objects.requireNonNull(path, "path");
      if ((content == null) == (source == null)) {
        throw new IllegalArgumentException("a file has either content or a source: " + path);
      }
    }

    byte[] bytes() throws IOException {
      return content != null ? content : Files.readAllBytes(source);
    }
  }

  /** What a pooled runner gets: the UDF's files and the variables the UDF's image would set. */
  public record Load(Map<String, String> env, List<File> files) {
    public Load {
      env = Map.copyOf(env);
      files = List.copyOf(files);
    }
  }

  /**
   * Waits until a pooled runner says it is warm (its WAITING frame); kills it when it does not
   * within {@code timeout}.
   *
   * @throws IOException when it exits, says something else, or is not warm in time
   */
  public static void awaitWarm(RunnerProcess runner, Duration timeout)
      throws IOException, InterruptedException {
    IOException[] failure = new IOException[1];
    int[] type = {-1};
    Thread reader =
        Thread.ofVirtual()
            .start(
                () -> {
                  try {
                    type[0] = FrameIO.readFrame(runner.stdout()).type();
                  } catch (IOException e) {
                    failure[0] = e;
                  }
                });
    if (!reader.join(timeout)) {
      runner.kill();
      reader.join(Duration.ofSeconds(5));
      throw new IOException("a pooled runner was not warm within " + timeout.toSeconds() + " s");
    }
    if (failure[0] != null) {
      throw new IOException("a pooled runner ended before it was warm: " + failure[0], failure[0]);
    }
    if (type[0] != FrameIO.WAITING) {
      runner.kill();
      throw new IOException("a pooled runner sent frame type " + type[0] + " instead of WAITING");
    }
  }

  /**
   * Launches the runners of a UDF placed in a warm sandbox: the {@code warm} ones first, then
   * (after a runner died, or when more are asked for) new pooled runners from {@code exec}; each is
   * sent {@code load} with the variables of its launch on top (they win on a clash).
   */
  public static RunnerLauncher launcher(List<RunnerProcess> warm, RunnerLauncher exec, Load load) {
    Deque<RunnerProcess> left = new ConcurrentLinkedDeque<>(warm);
    return env -> {
      RunnerProcess runner = left.poll();
      if (runner == null) {
        // Its WAITING is read here, like a warm one's, so the runner's first words to the pool
        // are READY or LOAD_ERROR whichever way it started.
        runner = exec.launch(List.of());
        try {
          awaitWarm(runner, WARM_TIMEOUT);
        } catch (InterruptedException e) {
          runner.kill();
          Thread.currentThread().interrupt();
          throw new IOException("interrupted while a pooled runner started", e);
        }
      }
      Map<String, String> all = new TreeMap<>(load.env());
      for (String kv : env) {
        int eq = kv.indexOf('=');
        all.put(kv.substring(0, eq), kv.substring(eq + 1));
      }
      try {
        send(runner.stdin(), all, load.files());
      } catch (IOException e) {
        runner.kill();
        throw e;
      }
      return runner;
    };
  }

  /** Writes one LOAD frame (PROTOCOL.md). */
  static void send(OutputStream out, Map<String, String> env, List<File> files) throws IOException {
    List<byte[]> contents = new ArrayList<>();
    ObjectNode header = JSON.createObjectNode();
    ObjectNode vars = header.putObject("env");
    env.forEach(vars::put);
    ArrayNode list = header.putArray("files");
    long length = 0;
    for (File f : files) {
      byte[] b = f.bytes();
      contents.add(b);
      list.addArray().add(f.path()).add(b.length).add(f.mode());
      length += b.length;
    }
    byte[] head = JSON.writeValueAsBytes(header);
    long payload = 4L + head.length + length;
    if (payload > FrameIO.MAX_PAYLOAD) {
      throw new IOException(
          "the UDF's code and imports ("
              + (length >> 20)
              + " MiB) are too large for one LOAD frame");
    }
    byte[] prefix = new byte[FrameIO.HEADER_BYTES + 4];
    FrameIO.INT.set(prefix, 0, (int) payload);
    prefix[4] = (byte) FrameIO.LOAD;
    FrameIO.INT.set(prefix, FrameIO.HEADER_BYTES, head.length);
    out.write(prefix);
    out.write(head);
    for (byte[] b : contents) {
      out.write(b);
    }
    out.flush();
  }
}
