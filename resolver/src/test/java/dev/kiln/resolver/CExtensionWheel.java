package dev.kiln.resolver;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * Builds a real platform wheel with a C extension: compiles a tiny module ({@value #MODULE}, with
 * {@code add(a, b)} and {@code version()}) with gcc against the host python3's headers ({@code
 * python3-config --includes}) and packages it for the host's CPython ABI, e.g. {@code
 * kiln_cext-1.0-cp311-cp311-linux_x86_64.whl}.
 */
public final class CExtensionWheel {
  /** The extension module's import name. */
  public static final String MODULE = "kiln_cext";

  private static final String SOURCE =
      """
      #define PY_SSIZE_T_CLEAN
      #include <Python.h>

      static PyObject *add(PyObject *self, PyObject *args) {
          long long a, b;
          if (!PyArg_ParseTuple(args, "LL", &a, &b)) {
              return NULL;
          }
          return PyLong_FromLongLong(a + b);
      }

      static PyObject *version(PyObject *self, PyObject *unused) {
          return PyUnicode_FromString(KILN_CEXT_VERSION);
      }

      static PyMethodDef methods[] = {
          {"add", add, METH_VARARGS, "Adds two integers in C."},
          {"version", version, METH_NOARGS, "The version this extension was built as."},
          {NULL, NULL, 0, NULL},
      };

      static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kiln_cext", NULL, -1, methods};

      PyMODINIT_FUNC PyInit_kiln_cext(void) {
          return PyModule_Create(&module);
      }
      """;

  /** What the host Python builds for. */
  public record Host(String extSuffix, String abiTag, String machine, List<String> includes) {
    /** The wheel tag a locally built extension gets, e.g. {@code cp311-cp311-linux_x86_64}. */
    public String wheelTag() {
      return abiTag + "-" + abiTag + "-linux_" + machine;
    }
  }

  private CExtensionWheel() {}

  /** Asks the host python3 (and python3-config) what it builds extensions for. */
  public static Host host() throws IOException, InterruptedException {
    List<String> facts =
        run(
                List.of(
                    "python3",
                    "-c",
                    "import sysconfig, sys, platform\n"
                        + "print(sysconfig.get_config_var('EXT_SUFFIX'))\n"
                        + "print('cp%d%d' % sys.version_info[:2])\n"
                        + "print(platform.machine())\n"
                        + "print(sysconfig.get_paths()['include'])\n"),
                null)
            .lines()
            .toList();
    List<String> includes = new ArrayList<>();
    try {
      for (String flag : run(List.of("python3-config", "--includes"), null).strip().split("\\s+")) {
        if (!flag.isEmpty()) {
          includes.add(flag);
        }
      }
    } catch (IOException noConfig) {
      includes.add("-I" + facts.get(3)); // python3-config is missing: sysconfig knows the headers
    }
    return new Host(facts.get(0), facts.get(1), facts.get(2), List.copyOf(includes));
  }

  /**
   * Compiles the extension in {@code workDir} and returns a wheel of project {@code kiln-cext} at
   * {@code version} holding it, tagged for the host.
   */
  public static WheelBuilder build(Path workDir, String version)
      throws IOException, InterruptedException {
    Host host = host();
    Files.createDirectories(workDir);
    Path source = Files.writeString(workDir.resolve(MODULE + ".c"), SOURCE);
    Path library = workDir.resolve(MODULE + host.extSuffix());
    List<String> gcc = new ArrayList<>(List.of("gcc", "-shared", "-fPIC", "-O2"));
    gcc.addAll(host.includes());
    gcc.addAll(
        List.of(
            "-DKILN_CEXT_VERSION=\"" + version + "\"",
            "-o",
            library.toString(),
            source.toString()));
    run(gcc, workDir);
    return WheelBuilder.wheel("kiln-cext", version)
        .tag(host.wheelTag())
        .requiresPython(">=3")
        .file(MODULE + host.extSuffix(), Files.readAllBytes(library));
  }

  private static String run(List<String> command, Path dir)
      throws IOException, InterruptedException {
    ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
    if (dir != null) {
      pb.directory(dir.toFile());
    }
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new IOException(String.join(" ", command) + " did not finish in 120 s");
    }
    if (p.exitValue() != 0) {
      throw new IOException(String.join(" ", command) + " failed (" + p.exitValue() + "): " + out);
    }
    return out;
  }
}
