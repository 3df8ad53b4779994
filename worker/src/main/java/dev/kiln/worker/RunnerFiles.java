package dev.kiln.worker;

import dev.kiln.definition.DataType;
import dev.kiln.definition.RuntimeSpec;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Collections;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/**
 * The files and commands that put the runner into an image: the runner layer (the same for every
 * UDF), the code layer (one per UDF), and how to start the runner in either mode.
 */
public final class RunnerFiles {

  /** Where the runner layer puts the runner's entry script. */
  public static final String RUNNER_PATH = "/kiln/runner/kiln_runner.py";

  /** Where the code layer puts the UDF; the runner reads it from {@code $KILN_UDF_DIR}. */
  public static final String UDF_DIR = "/kiln/udf";

  /**
   * Where the runner layer puts Kiln's {@code databend_udf} module, next to the runner: the
   * runner's directory is first on {@code sys.path}, so UDF code written for the databend-udf
   * package imports it unchanged (and only such code pays for the import).
   */
  public static final String DATABEND_UDF_PATH = "/kiln/runner/databend_udf.py";

  private static final String RUNNER_DIR = "/kiln/runner/";

  /**
   * Every file of the runner layer, as named in {@link #RUNNER_DIR} and next to this class under
   * {@code runner/}: the entry script, the modules it imports (one concern each, see its docstring;
   * the runner imports the rarely needed ones on first use) and {@code databend_udf}.
   */
  private static final List<String> RUNNER_FILES =
      List.of(
          "kiln_runner.py",
          "kiln_modules.py",
          "kiln_serve.py",
          "kiln_listen.py",
          "kiln_calls.py",
          "kiln_columns.py",
          "kiln_nested.py",
          "kiln_wire.py",
          "databend_udf.py");

  private RunnerFiles() {}

  /** The runner layer: absolute paths in the image to file contents. */
  public static Map<String, byte[]> runtimeFiles() {
    Map<String, byte[]> files = new TreeMap<>();
    Holder.FILES.forEach((path, bytes) -> files.put(path, bytes.clone()));
    return files;
  }

  /**
   * A sha256 over the runner layer's paths and bytes (every file of it) and the variables the image
   * sets for the runner. It is part of every content key, so a new runner makes new images instead
   * of running new code, or old code with new variables, against old ones.
   */
  public static String version() {
    return Holder.VERSION;
  }

  /** Starts the runner in init mode: prints {@code ready}, then waits for stdin to close. */
  public static List<String> initCommand() {
    return List.of("python3", RUNNER_PATH, "init");
  }

  /** Starts a runner that serves batches over stdin/stdout (see PROTOCOL.md). */
  public static List<String> serveCommand() {
    return List.of("python3", RUNNER_PATH, "serve");
  }

  /**
   * Starts a listener on {@code hostPort} ({@code HOST:PORT}; port 0 picks one) that forks a runner
   * serving batches for each TCP connection ({@link TcpRunnerLauncher}); it prints {@code
   * kiln-runner listening on HOST:PORT} on stdout once it listens.
   */
  public static List<String> listenCommand(String hostPort) {
    return List.of("python3", RUNNER_PATH, "listen", hostPort);
  }

  /**
   * The code layer: {@code udf.py} (the code, verbatim) and {@code udf.meta} (handler and canonical
   * type strings as {@code key=value} lines, which the runner reads without importing json), under
   * {@link #UDF_DIR}.
   */
  public static Map<String, byte[]> udfFiles(RuntimeSpec spec) {
    StringBuilder meta = new StringBuilder();
    meta.append("handler=").append(spec.handler()).append('\n');
    for (DataType t : spec.inputTypes()) {
      meta.append("input_type=").append(t).append('\n');
    }
    meta.append("result_type=").append(spec.resultType()).append('\n');
    Map<String, byte[]> files = new TreeMap<>();
    files.put(UDF_DIR + "/udf.py", spec.code().getBytes(StandardCharsets.UTF_8));
    files.put(UDF_DIR + "/udf.meta", meta.toString().getBytes(StandardCharsets.UTF_8));
    return files;
  }

  /** Environment variables the image sets for the runner. */
  public static Map<String, String> environment() {
    Map<String, String> env = new TreeMap<>();
    env.put("KILN_UDF_DIR", UDF_DIR);
    // Sandboxes may have a read-only root; and unbuffered prints reach the output tail even
    // when the process dies right after printing.
    env.put("PYTHONDONTWRITEBYTECODE", "1");
    env.put("PYTHONUNBUFFERED", "1");
    // glibc's malloc keeps a batch's buffers (up to 8 MiB each) in its heap and keeps up to 32
    // MiB free there for the next batch, instead of mapping every one afresh and giving it back:
    // under gVisor each new page is a fault the sandbox's kernel handles, and each map and unmap a
    // trapped system call. Measured, a runner under runsc serving 65,536-row batches back to back,
    // two runs (the first with a 4 MiB threshold): add(BIGINT, BIGINT) 6.3 -> 4.9 and 7.2 -> 6.1
    // ms per batch, concat(VARCHAR, VARCHAR) 8.8 -> 7.5 and 10.2 -> 8.7 ms (the host: 5.2-5.9 and
    // 7.6-7.7 ms). glibc reads them once, at the process's start, so they are the image's.
    env.put("MALLOC_MMAP_THRESHOLD_", Integer.toString(8 << 20));
    env.put("MALLOC_TRIM_THRESHOLD_", Integer.toString(32 << 20));
    return env;
  }

  /** Loaded once: the runner is a class-path resource that cannot change while we run. */
  private static final class Holder {
    static final Map<String, byte[]> FILES = loadAll();
    static final String VERSION = digest(withEnvironment(FILES));

    /** The files, and each variable as a file of its own under a path no file can have. */
    private static Map<String, byte[]> withEnvironment(Map<String, byte[]> files) {
      Map<String, byte[]> all = new TreeMap<>(files);
      environment().forEach((k, v) -> all.put("\0env\0" + k, v.getBytes(StandardCharsets.UTF_8)));
      return all;
    }

    private static Map<String, byte[]> loadAll() {
      Map<String, byte[]> files = new TreeMap<>();
      for (String name : RUNNER_FILES) {
        files.put(RUNNER_DIR + name, load("runner/" + name));
      }
      return Collections.unmodifiableMap(files);
    }

    private static byte[] load(String resource) {
      try (InputStream in = RunnerFiles.class.getResourceAsStream(resource)) {
        if (in == null) {
          throw new IllegalStateException(
              "the runner file " + resource + " is missing from the kiln-worker jar");
        }
        return in.readAllBytes();
      } catch (IOException e) {
        throw new UncheckedIOException("cannot read the runner file " + resource, e);
      }
    }

    private static String digest(Map<String, byte[]> files) {
      MessageDigest sha;
      try {
        sha = MessageDigest.getInstance("SHA-256");
      } catch (NoSuchAlgorithmException e) {
        throw new IllegalStateException("the JDK has no SHA-256", e);
      }
      // Length-prefixed fields, so no two different file sets hash the same input.
      for (Map.Entry<String, byte[]> file : new TreeMap<>(files).entrySet()) {
        byte[] path = file.getKey().getBytes(StandardCharsets.UTF_8);
        sha.update(ByteBuffer.allocate(8).putLong(path.length).array());
        sha.update(path);
        sha.update(ByteBuffer.allocate(8).putLong(file.getValue().length).array());
        sha.update(file.getValue());
      }
      return HexFormat.of().formatHex(sha.digest());
    }
  }
}
