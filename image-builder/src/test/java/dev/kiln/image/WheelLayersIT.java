package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Function;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Real wheels in an image over the real base: six and humanize from the local PyPI mirror ({@code
 * /opt/pypi/files}, what {@code pip config list} points at), and a C extension compiled here with
 * gcc against the host's Python 3.11 headers. Running them inside gVisor is the control plane's
 * end-to-end test; here the host's python3 (same cp311 ABI) imports them from the extracted layers.
 */
class WheelLayersIT {
  private static final Path MIRROR = Path.of("/opt/pypi/files");

  @TempDir Path tmp;

  @Test
  void realWheelsAndACompiledExtensionInstallIntoLayersOverTheRealBase() throws Exception {
    Path six = mirrorWheel("six-", "-py2.py3-none-any.whl");
    Path humanize = mirrorWheel("humanize-", "-py3-none-any.whl");
    Path fastmath = compiledExtensionWheel(tmp.resolve("build"));

    InstallLayout layout = TestWheels.DEBIAN;
    WheelLayers wheels = new WheelLayers(tmp.resolve("wheels"));
    List<LayerSpec> layers = new ArrayList<>();
    for (Path wheel : List.of(six, humanize, fastmath)) {
      layers.add(wheels.layerFor(wheel, wheel.getFileName().toString(), layout));
    }
    layers.add(
        new LayerSpec(
            "code",
            List.of(
                LayerFile.ofBytes(
                    "/kiln/udf/udf.py",
                    "import humanize\ndef f(x):\n    return humanize.intcomma(x)\n"
                        .getBytes(StandardCharsets.UTF_8),
                    0644))));

    BaseImage base = BaseImage.parse(TestImages.baseArchive().toString());
    BuiltImage image;
    try (ImageBuilder builder = new ImageBuilder(base, tmp.resolve("images"))) {
      image =
          builder.build(
              new ImageRequest(
                  "kiln/udf:wheels",
                  layers,
                  List.of("/usr/bin/python3"),
                  List.of(),
                  Map.of(),
                  "/",
                  Map.of()));
      LayoutCheck.image(builder.layoutDir(), "kiln/udf:wheels");
    }
    assertThat(image.layers()).hasSize(5);

    String site = "usr/local/lib/python3.11/dist-packages/";
    Map<String, LayoutCheck.Entry> sixLayer = entries(image.layers().get(1));
    assertThat(sixLayer).containsKeys(site + "six.py", site + "six-1.17.0.dist-info/METADATA");
    assertThat(text(sixLayer.get(site + "six-1.17.0.dist-info/INSTALLER"))).isEqualTo("kiln\n");
    assertThat(text(sixLayer.get(site + "six-1.17.0.dist-info/RECORD")))
        .contains("six.py,sha256=", "six-1.17.0.dist-info/RECORD,,");
    assertThat(sixLayer.get(site + "six.py").mode() & 0777).isEqualTo(0644);

    Map<String, LayoutCheck.Entry> humanizeLayer = entries(image.layers().get(2));
    assertThat(humanizeLayer.keySet())
        .contains(site + "humanize/__init__.py", site + "humanize/number.py")
        .anySatisfy(name -> assertThat(name).startsWith(site + "humanize/locale/"))
        .contains("kiln/modules/humanize-4.16.0-py3-none-any.src.kmb")
        .filteredOn(name -> !name.endsWith("/") && !name.startsWith("kiln/modules/"))
        .allSatisfy(name -> assertThat(name).startsWith(site));

    Map<String, LayoutCheck.Entry> nativeLayer = entries(image.layers().get(3));
    LayoutCheck.Entry so =
        nativeLayer.get(site + "fastmath/_speedups.cpython-311-x86_64-linux-gnu.so");
    assertThat(so).isNotNull();
    assertThat(so.mode() & 0777).isEqualTo(0755);
    assertThat(so.content()).startsWith(0x7f, 'E', 'L', 'F');
    assertThat(text(nativeLayer.get("usr/local/bin/fastmath-add")))
        .startsWith("#!/usr/bin/python3\n")
        .contains("from fastmath.cli import main");

    // The host's python3 (cp311, like the base's) imports all three from the extracted layers.
    Path root = tmp.resolve("root");
    for (LayerSpec layer : layers.subList(0, 3)) {
      WheelLayersTest.extract(layer, root);
    }
    String out =
        python(
            root.resolve(site),
            "import six, humanize, fastmath\n"
                + "print(six.PY3, humanize.intcomma(1234567), fastmath.add(40, 2))\n"
                + "print(all(m.__file__.startswith(sys.argv[1]) for m in (six, humanize,"
                + " fastmath._speedups)))\n");
    assertThat(out).isEqualTo("True 1,234,567 42\nTrue\n");
  }

  /** The newest wheel of a package in the mirror whose name has this prefix and suffix. */
  private static Path mirrorWheel(String prefix, String suffix) throws IOException {
    if (!Files.isDirectory(MIRROR)) {
      fail(
          "the local PyPI mirror "
              + MIRROR
              + " is missing; this machine's pip config (pip config list) should point at it");
    }
    try (Stream<Path> files = Files.list(MIRROR)) {
      return files
          .filter(p -> p.getFileName().toString().startsWith(prefix))
          .filter(p -> p.getFileName().toString().endsWith(suffix))
          .max(Path::compareTo)
          .orElseThrow(() -> new AssertionError("no " + prefix + "*" + suffix + " in " + MIRROR));
    }
  }

  /**
   * A platlib wheel with a C extension compiled now: {@code fastmath._speedups.add(a, b)}, a Python
   * package around it and a console script.
   */
  private static Path compiledExtensionWheel(Path dir) throws Exception {
    Files.createDirectories(dir);
    Path source = dir.resolve("speedups.c");
    Files.writeString(
        source,
        """
        #define PY_SSIZE_T_CLEAN
        #include <Python.h>

        static PyObject *add(PyObject *self, PyObject *args) {
          long a, b;
          if (!PyArg_ParseTuple(args, "ll", &a, &b)) {
            return NULL;
          }
          return PyLong_FromLong(a + b);
        }

        static PyMethodDef methods[] = {
          {"add", add, METH_VARARGS, "Adds two integers in C."},
          {NULL, NULL, 0, NULL}
        };

        static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

        PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
        """);
    String includes = run(List.of("python3-config", "--includes")).strip();
    Path so = dir.resolve("_speedups.so");
    List<String> gcc = new ArrayList<>(List.of("gcc", "-shared", "-fPIC", "-O2"));
    gcc.addAll(List.of(includes.split("\\s+")));
    gcc.addAll(List.of("-o", so.toString(), source.toString()));
    run(gcc);

    return new TestWheels("fastmath", "1.0", false)
        .tags("cp311-cp311-linux_x86_64")
        .file("fastmath/__init__.py", "from fastmath._speedups import add\n")
        .file(
            "fastmath/cli.py",
            "import sys\nfrom fastmath import add\ndef main():\n"
                + "    print(add(int(sys.argv[1]), int(sys.argv[2])))\n")
        .file("fastmath/_speedups.cpython-311-x86_64-linux-gnu.so", Files.readAllBytes(so), 0755)
        .file(
            "fastmath-1.0.dist-info/entry_points.txt",
            "[console_scripts]\nfastmath-add = fastmath.cli:main\n")
        .write(dir);
  }

  private static Map<String, LayoutCheck.Entry> entries(ImageLayer layer) throws IOException {
    return LayoutCheck.entries(layer.blob()).stream()
        .collect(Collectors.toMap(LayoutCheck.Entry::name, Function.identity()));
  }

  private static String text(LayoutCheck.Entry entry) {
    assertThat(entry).isNotNull();
    return new String(entry.content(), StandardCharsets.UTF_8);
  }

  private static String python(Path sitePackages, String code) throws Exception {
    ProcessBuilder pb =
        new ProcessBuilder(
            "python3",
            "-I", // -I -S: no host site-packages, so only the unpacked layers can provide these
            "-S",
            "-c",
            "import sys; sys.path.insert(0, sys.argv[1]); exec(sys.argv[2])",
            sitePackages.toString(),
            code);
    return run(pb);
  }

  private static String run(List<String> command) throws Exception {
    return run(new ProcessBuilder(command));
  }

  private static String run(ProcessBuilder pb) throws Exception {
    Process p = pb.redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(120, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      fail(pb.command() + " did not finish");
    }
    assertThat(p.exitValue()).as("%s: %s", pb.command(), out).isZero();
    return out;
  }
}
