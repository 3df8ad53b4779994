package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Wheels built here (zip files with a RECORD, as bdist_wheel writes them) turned into layers;
 * images are built over a tiny docker-save base, so every case runs in about a second.
 */
class WheelLayersTest {
  @TempDir Path tmp;
  private BaseImage base;

  @BeforeEach
  void tinyBase() throws IOException {
    base = tinyBase(tmp);
  }

  /** A docker-save base of one file, with its Python version as a label. */
  static BaseImage tinyBase(Path tmp) throws IOException {
    Path archive =
        TestImages.tinyBaseArchive(
            tmp.resolve("base/tiny.tar"),
            Map.of("usr/bin/python3", "#!/bin/sh\necho python\n"),
            Map.of("dev.kiln.python.version", "3.11.2"));
    return BaseImage.parse(archive.toString());
  }

  /** A pure-Python package with a little of everything the wheel format has. */
  static TestWheels demo() {
    TestWheels w = new TestWheels("demo_pkg", "1.2.0", true);
    return w.file("demo_pkg/__init__.py", "from demo_pkg.cli import main\nVALUE = 42\n")
        .file(
            "demo_pkg/cli.py",
            "import sys\n"
                + "def main():\n"
                + "    print('demo main', sys.argv[1:])\n"
                + "    return 3\n"
                + "class Tool:\n"
                + "    @staticmethod\n"
                + "    def run():\n"
                + "        print('tool run')\n")
        .file("demo_pkg/tool.sh", "#!/bin/sh\necho tool\n".getBytes(StandardCharsets.UTF_8), 0755)
        .file("demo_pkg-1.2.0.dist-info/top_level.txt", "demo_pkg\n")
        .file(
            "demo_pkg-1.2.0.dist-info/entry_points.txt",
            "[console_scripts]\n"
                + "demo = demo_pkg.cli:main\n"
                + "demo-extra = demo_pkg.cli:main [speedups]\n"
                + "\n"
                + "[gui_scripts]\n"
                + "demo-gui = demo_pkg.cli:Tool.run\n"
                + "\n"
                + "[demo.plugins]\n"
                + "ignored = not a script\n")
        .file(
            w.dataDir() + "/scripts/demo-tool",
            "#!python -u\nimport demo_pkg\nprint(demo_pkg.VALUE)\n"
                .getBytes(StandardCharsets.UTF_8),
            0644)
        .file(w.dataDir() + "/scripts/plain.sh", "#!/bin/sh\necho plain\n")
        .file(w.dataDir() + "/headers/demo.h", "#define DEMO 1\n")
        .file(w.dataDir() + "/data/share/demo/README", "data file\n")
        .file(w.dataDir() + "/platlib/demo_native/__init__.py", "NATIVE = True\n")
        .file(w.dataDir() + "/purelib/demo_extra/__init__.py", "EXTRA = True\n");
  }

  @Test
  void installsEachPartWhereTheWheelSpecSays() throws Exception {
    Path wheel = demo().write(tmp.resolve("wheels"));
    LayerSpec layer =
        new WheelLayers(tmp.resolve("work"))
            .layerFor(wheel, wheel.getFileName().toString(), TestWheels.SPLIT);

    assertThat(layer.name()).isEqualTo("wheel demo_pkg-1.2.0-py3-none-any.whl");
    assertThat(layer.files()).isEmpty();
    assertThat(layer.blob().file()).isRegularFile().hasSize(layer.blob().size());
    Map<String, LayoutCheck.Entry> files = files(layer);
    assertThat(files.keySet())
        .containsExactlyInAnyOrder(
            "py/pure/demo_pkg/__init__.py",
            "py/pure/demo_pkg/cli.py",
            "py/pure/demo_pkg/tool.sh",
            "py/pure/demo_pkg-1.2.0.dist-info/top_level.txt",
            "py/pure/demo_pkg-1.2.0.dist-info/entry_points.txt",
            "py/pure/demo_pkg-1.2.0.dist-info/METADATA",
            "py/pure/demo_pkg-1.2.0.dist-info/WHEEL",
            "py/pure/demo_pkg-1.2.0.dist-info/INSTALLER",
            "py/pure/demo_pkg-1.2.0.dist-info/RECORD",
            "py/bin/demo-tool",
            "py/bin/plain.sh",
            "py/bin/demo",
            "py/bin/demo-extra",
            "py/bin/demo-gui",
            "py/include/demo_pkg/demo.h",
            "py/data/share/demo/README",
            "py/plat/demo_native/__init__.py",
            "py/pure/demo_extra/__init__.py",
            "kiln/modules/demo_pkg-1.2.0-py3-none-any.src.kmb");

    // Modes: scripts and files the wheel marks executable are 0755, the rest 0644.
    assertThat(mode(files, "py/pure/demo_pkg/tool.sh")).isEqualTo(0755);
    assertThat(mode(files, "py/bin/demo-tool")).isEqualTo(0755);
    assertThat(mode(files, "py/bin/plain.sh")).isEqualTo(0755);
    assertThat(mode(files, "py/bin/demo")).isEqualTo(0755);
    assertThat(mode(files, "py/pure/demo_pkg/cli.py")).isEqualTo(0644);
    assertThat(mode(files, "py/include/demo_pkg/demo.h")).isEqualTo(0644);

    // #!python (whatever follows on the line) becomes the layout's interpreter; others stay.
    assertThat(text(files, "py/bin/demo-tool"))
        .isEqualTo("#!/opt/python/bin/python3\nimport demo_pkg\nprint(demo_pkg.VALUE)\n");
    assertThat(text(files, "py/bin/plain.sh")).isEqualTo("#!/bin/sh\necho plain\n");
    assertThat(text(files, "py/pure/demo_pkg-1.2.0.dist-info/INSTALLER")).isEqualTo("kiln\n");
    assertThat(text(files, "py/bin/demo"))
        .startsWith("#!/opt/python/bin/python3\n")
        .contains("from demo_pkg.cli import main\n", "sys.exit(main())");
    assertThat(text(files, "py/bin/demo-gui"))
        .contains("from demo_pkg.cli import Tool\n", "sys.exit(Tool.run())");

    // The new RECORD lists every installed file relative to site-packages, with hash and size.
    String record = text(files, "py/pure/demo_pkg-1.2.0.dist-info/RECORD");
    assertThat(record.lines())
        .contains(
            "demo_pkg-1.2.0.dist-info/RECORD,,",
            "../bin/demo-tool,sha256="
                + TestWheels.sha256(files.get("py/bin/demo-tool").content())
                + ","
                + files.get("py/bin/demo-tool").content().length,
            "../include/demo_pkg/demo.h,sha256="
                + TestWheels.sha256("#define DEMO 1\n".getBytes(StandardCharsets.UTF_8))
                + ",15",
            "../plat/demo_native/__init__.py,sha256="
                + TestWheels.sha256("NATIVE = True\n".getBytes(StandardCharsets.UTF_8))
                + ",14")
        .as("every file but the module bundle, which is Kiln's, outside site-packages")
        .hasSize(files.size() - 1);
    for (Map.Entry<String, LayoutCheck.Entry> f : files.entrySet()) {
      if (!f.getKey().endsWith("/RECORD") && !f.getKey().startsWith("kiln/")) {
        String rel = Path.of("/py/pure").relativize(Path.of("/" + f.getKey())).toString();
        byte[] content = f.getValue().content();
        assertThat(record.lines())
            .as("RECORD row of %s", rel)
            .contains(rel + ",sha256=" + TestWheels.sha256(content) + "," + content.length);
      }
    }
  }

  @Test
  void theLayerBundlesItsModulesSourcesButNotTestsNorExtensions() throws Exception {
    byte[] init = "from .core import f\n".getBytes(StandardCharsets.UTF_8);
    Path wheel =
        new TestWheels("bundled", "1.0", false)
            .file("bundled/__init__.py", init, 0644)
            .file("bundled/core.py", "def f():\n    return 1\n")
            .file("bundled/fast.cpython-311-x86_64-linux-gnu.so", "ELF")
            .file("bundled/tests/__init__.py", "")
            .file("bundled/tests/test_core.py", "def test():\n    pass\n")
            .file("bundled/data.txt", "data\n")
            .write(tmp.resolve("wheels"));
    LayerSpec layer =
        new WheelLayers(tmp.resolve("work"))
            .layerFor(wheel, wheel.getFileName().toString(), TestWheels.SPLIT);
    Map<String, LayoutCheck.Entry> files = files(layer);
    String target = "kiln/modules/bundled-1.0-py3-none-any.src.kmb";
    assertThat(files).containsKey(target);

    ByteBuffer b = ByteBuffer.wrap(files.get(target).content()).order(ByteOrder.LITTLE_ENDIAN);
    byte[] magic = new byte[8];
    b.get(magic);
    assertThat(new String(magic, StandardCharsets.US_ASCII)).isEqualTo("KILNMB1\n");
    Map<String, String> entries = new TreeMap<>();
    for (int i = b.getInt(); i > 0; i--) {
      int kind = b.get();
      byte[] path = new byte[b.getShort()];
      b.get(path);
      int offset = Math.toIntExact(b.getLong());
      int length = Math.toIntExact(b.getLong());
      String content =
          new String(files.get(target).content(), offset, length, StandardCharsets.UTF_8);
      entries.put(new String(path, StandardCharsets.UTF_8), kind + ":" + content);
    }
    assertThat(entries)
        .containsExactly(
            Map.entry("/py/plat/bundled/__init__.py", "0:from .core import f\n"),
            Map.entry("/py/plat/bundled/core.py", "0:def f():\n    return 1\n"),
            Map.entry("/py/plat/bundled/fast.cpython-311-x86_64-linux-gnu.so", "2:"));
    assertThat(files.get("py/plat/bundled/__init__.py").content()).isEqualTo(init);
  }

  @Test
  void layerTarsAreReproducibleAndListEveryDirectory() throws Exception {
    Path wheel = demo().write(tmp.resolve("wheels"));
    LayerSpec layer =
        new WheelLayers(tmp.resolve("work"))
            .layerFor(wheel, wheel.getFileName().toString(), TestWheels.SPLIT);
    List<LayoutCheck.Entry> entries = LayoutCheck.entries(layer.blob().file());
    List<String> names = entries.stream().map(LayoutCheck.Entry::name).toList();
    assertThat(names)
        .isSorted()
        .startsWith("kiln/", "kiln/modules/", "kiln/modules/demo_pkg-1.2.0-py3-none-any.src.kmb")
        .contains("py/", "py/bin/", "py/pure/demo_pkg/");
    assertThat(names)
        .as("every parent directory is listed")
        .allSatisfy(
            n -> {
              String parent = n.substring(0, n.lastIndexOf('/', n.length() - 2) + 1);
              assertThat(parent.isEmpty() || names.contains(parent)).as(n).isTrue();
            });
    assertThat(entries)
        .allSatisfy(
            e -> {
              assertThat(e.uid()).isZero();
              assertThat(e.gid()).isZero();
              assertThat(e.mtimeSeconds()).isEqualTo(1);
              if (e.name().endsWith("/")) {
                assertThat(e.mode() & 0777).isEqualTo(0755);
              }
            });
    try (InputStream in = LayoutCheck.tar(layer.blob().file())) {
      assertThat(dev.kiln.cache.Digest.of(in)).isEqualTo(layer.blob().diffId());
    }
    try (InputStream in = Files.newInputStream(layer.blob().file())) {
      assertThat(dev.kiln.cache.Digest.of(in)).isEqualTo(layer.blob().digest());
    }
  }

  @Test
  void installedScriptsAndMetadataWorkWithARealPython() throws Exception {
    // The host's python3 stands in for the image's: the launchers run, and importlib.metadata
    // reads the RECORD and entry points that were written.
    String python = hostPython();
    InstallLayout layout = new InstallLayout("/site", "/site", "/bin", "/data", "/include", python);
    Path wheel = demo().write(tmp.resolve("wheels"));
    LayerSpec layer =
        new WheelLayers(tmp.resolve("work"))
            .layerFor(wheel, wheel.getFileName().toString(), layout);
    Path root = extract(layer, tmp.resolve("root"));

    Run demo = run(root, root.resolve("bin/demo").toString(), "a", "b");
    assertThat(demo.output()).isEqualTo("demo main ['a', 'b']\n");
    assertThat(demo.exit()).isEqualTo(3);
    assertThat(run(root, root.resolve("bin/demo-tool").toString()).output()).isEqualTo("42\n");

    Run metadata =
        run(
            root,
            python,
            "-c",
            "import importlib.metadata as m\n"
                + "d = m.distribution('demo-pkg')\n"
                + "print(d.version, d.read_text('INSTALLER').strip())\n"
                + "print(sorted(e.name for e in d.entry_points if e.group == 'console_scripts'))\n"
                + "bad = [str(f) for f in d.files if f.hash and f.hash.value and"
                + " __import__('hashlib').sha256(f.read_binary()).digest() !="
                + " __import__('base64').urlsafe_b64decode(f.hash.value + '==')]\n"
                + "print(len(d.files), bad)\n");
    assertThat(metadata.output()).isEqualTo("1.2.0 kiln\n['demo', 'demo-extra']\n18 []\n");
  }

  @Test
  void platlibWheelsGoToPlatlib() throws Exception {
    Path wheel =
        new TestWheels("native", "0.1", false)
            .tags("cp311-cp311-linux_x86_64")
            .file("native/__init__.py", "")
            .file(
                "native/_impl.cpython-311-x86_64-linux-gnu.so",
                new byte[] {0x7f, 'E', 'L', 'F'},
                0755)
            .write(tmp.resolve("wheels"));
    LayerSpec layer =
        new WheelLayers(tmp.resolve("work"))
            .layerFor(wheel, wheel.getFileName().toString(), TestWheels.SPLIT);
    Map<String, LayoutCheck.Entry> files = files(layer);
    assertThat(files)
        .containsKeys(
            "py/plat/native/__init__.py",
            "py/plat/native/_impl.cpython-311-x86_64-linux-gnu.so",
            "py/plat/native-0.1.dist-info/RECORD");
    assertThat(mode(files, "py/plat/native/_impl.cpython-311-x86_64-linux-gnu.so")).isEqualTo(0755);
  }

  @Test
  void tamperedWheelsAreRejectedAndLeaveNothingBehind() throws Exception {
    Path work = tmp.resolve("work");
    WheelLayers layers = new WheelLayers(work);
    Map<String, TestWheels> bad = new HashMap<>();
    bad.put(
        "does not match the sha256 in RECORD",
        small("changed").afterRecord("changed/__init__.py", "X=2")); // same size, other bytes
    bad.put(
        "changed/evil.py is not listed with a hash in RECORD",
        small("changed").afterRecord("changed/evil.py", "evil\n"));
    bad.put(
        "is 3 bytes but RECORD says 4 bytes",
        small("changed")
            .editRecord(
                r ->
                    r.replace(
                        "changed/__init__.py,sha256="
                            + TestWheels.sha256("X=1".getBytes(StandardCharsets.UTF_8))
                            + ",3",
                        "changed/__init__.py,sha256="
                            + TestWheels.sha256("X=1".getBytes(StandardCharsets.UTF_8))
                            + ",4")));
    bad.put(
        "RECORD lists changed/gone.py, which the wheel does not contain",
        small("changed")
            .editRecord(
                r -> r + "changed/gone.py,sha256=" + TestWheels.sha256(new byte[0]) + ",0\n"));
    bad.put(
        "wheels must use sha256 or stronger",
        small("changed")
            .editRecord(r -> r.replace("changed/__init__.py,sha256=", "changed/__init__.py,md5=")));
    bad.put("has no changed-1.0.dist-info/RECORD file", small("changed").editRecord(r -> null));
    bad.put("has no changed-1.0.dist-info/WHEEL file", small("changed").wheelFile(null));
    bad.put(
        "it is in wheel format 2.0",
        small("changed").wheelFile("Wheel-Version: 2.0\nRoot-Is-Purelib: true\n"));
    bad.put(
        "WHEEL file has no Wheel-Version", small("changed").wheelFile("Root-Is-Purelib: true\n"));
    bad.put(
        "entry '../escape.py' is not a safe relative path",
        small("changed").file("../escape.py", "x"));
    bad.put(
        "entry '/etc/passwd' is not a safe relative path",
        small("changed").file("/etc/passwd", "x"));
    bad.put(
        "is in changed-1.0.data/lib, which is not one of purelib, platlib, scripts, headers, data",
        small("changed").file("changed-1.0.data/lib/x.py", "x"));
    bad.put(
        "entry point evil = 'os:system(\"rm\")'",
        small("changed")
            .file(
                "changed-1.0.dist-info/entry_points.txt",
                "[console_scripts]\nevil = os:system(\"rm\")\n"));
    for (Map.Entry<String, TestWheels> c : bad.entrySet()) {
      Path wheel = c.getValue().write(tmp.resolve("bad-" + Math.abs(c.getKey().hashCode())));
      assertThatThrownBy(
              () -> layers.layerFor(wheel, wheel.getFileName().toString(), TestWheels.DEBIAN))
          .as(c.getKey())
          .isInstanceOfSatisfying(
              KilnException.class,
              e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGES_UNRESOLVABLE))
          .hasMessageContaining("wheel changed-1.0-py3-none-any.whl")
          .hasMessageContaining(c.getKey());
    }
    try (Stream<Path> left = Files.list(work)) {
      assertThat(left).as("no layers or temporary files").isEmpty();
    }
  }

  @Test
  void namesThatAreNotWheelsOrDoNotMatchTheMetadataAreRejected() throws Exception {
    WheelLayers layers = new WheelLayers(tmp.resolve("work"));
    Path wheel = small("changed").write(tmp.resolve("wheels"));
    assertThatThrownBy(() -> layers.layerFor(wheel, "changed-1.0.tar.gz", TestWheels.DEBIAN))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGES_UNRESOLVABLE))
        .hasMessageContaining("'changed-1.0.tar.gz' is not a wheel file name");
    assertThatThrownBy(() -> layers.layerFor(wheel, "changed-py3-none-any.whl", TestWheels.DEBIAN))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGES_UNRESOLVABLE))
        .hasMessageContaining("has 4 dash-separated parts");
    assertThatThrownBy(
            () -> layers.layerFor(wheel, "other-1.0-py3-none-any.whl", TestWheels.DEBIAN))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGES_UNRESOLVABLE))
        .hasMessageContaining("does not belong to distribution other");
    Path notZip = Files.writeString(tmp.resolve("junk-1.0-py3-none-any.whl"), "not a zip");
    assertThatThrownBy(
            () -> layers.layerFor(notZip, "junk-1.0-py3-none-any.whl", TestWheels.DEBIAN))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGES_UNRESOLVABLE))
        .hasMessageContaining("not a readable zip archive");
    assertThatThrownBy(
            () ->
                layers.layerFor(
                    tmp.resolve("missing.whl"), "missing-1.0-py3-none-any.whl", TestWheels.DEBIAN))
        .isInstanceOf(java.nio.file.NoSuchFileException.class);
    assertThatThrownBy(
            () -> new InstallLayout("site-packages", "/a", "/b", "/c", "/d", "/usr/bin/python3"))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("purelib 'site-packages' is not an absolute, normalised path");
    // Matching is by normalised name, as pip does: PyYAML's dist-info for pyyaml's file name.
    Path mixed =
        new TestWheels("Mixed.Case_Name", "2.0", true)
            .file("m/__init__.py", "")
            .write(tmp.resolve("mixed"));
    assertThat(
            layers
                .layerFor(mixed, "mixed_case_name-2.0-py3-none-any.whl", TestWheels.DEBIAN)
                .blob())
        .isNotNull();
  }

  static TestWheels small(String name) {
    return new TestWheels(name, "1.0", true).file(name + "/__init__.py", "X=1");
  }

  static ImageRequest image(String name, LayerSpec wheel, String code) {
    return new ImageRequest(
        name,
        List.of(
            wheel,
            new LayerSpec(
                "code",
                List.of(
                    LayerFile.ofBytes(
                        "/kiln/udf/udf.py", code.getBytes(StandardCharsets.UTF_8), 0644)))),
        List.of("/usr/bin/python3"),
        List.of(),
        Map.of(),
        "/",
        Map.of());
  }

  /** The regular files of a built layer, by path. */
  static Map<String, LayoutCheck.Entry> files(LayerSpec layer) throws IOException {
    Map<String, LayoutCheck.Entry> out = new LinkedHashMap<>();
    for (LayoutCheck.Entry e : LayoutCheck.entries(layer.blob().file())) {
      if (!e.name().endsWith("/")) {
        out.put(e.name(), e);
      }
    }
    return out;
  }

  static int mode(Map<String, LayoutCheck.Entry> files, String path) {
    assertThat(files).containsKey(path);
    return files.get(path).mode() & 0777;
  }

  private static String text(Map<String, LayoutCheck.Entry> files, String path) {
    assertThat(files).containsKey(path);
    return new String(files.get(path).content(), StandardCharsets.UTF_8);
  }

  /** Extracts a built layer under {@code root}, with modes, as a container runtime would. */
  static Path extract(LayerSpec layer, Path root) throws IOException {
    try (TarArchiveInputStream tar =
        new TarArchiveInputStream(LayoutCheck.tar(layer.blob().file()))) {
      for (TarArchiveEntry e = tar.getNextEntry(); e != null; e = tar.getNextEntry()) {
        Path target = root.resolve(e.getName());
        if (e.isDirectory()) {
          Files.createDirectories(target);
        } else {
          Files.createDirectories(target.getParent());
          Files.copy(tar, target);
          if ((e.getMode() & 0111) != 0) {
            Files.setPosixFilePermissions(target, PosixFilePermissions.fromString("rwxr-xr-x"));
          }
        }
      }
    }
    return root;
  }

  record Run(int exit, String output) {}

  /** Runs a command with the extracted site-packages on PYTHONPATH; fails after 60 s. */
  private static Run run(Path root, String... command) throws Exception {
    ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
    pb.environment().put("PYTHONPATH", root.resolve("site").toString());
    pb.environment().put("PYTHONDONTWRITEBYTECODE", "1");
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    if (!p.waitFor(60, TimeUnit.SECONDS)) {
      p.destroyForcibly();
      throw new AssertionError(String.join(" ", command) + " did not finish");
    }
    return new Run(p.exitValue(), out);
  }

  /** The host's python3 interpreter, as an absolute path (it goes into #! lines). */
  static String hostPython() throws Exception {
    Process p =
        new ProcessBuilder("python3", "-c", "import sys; print(sys.executable)")
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    assertThat(p.waitFor()).as("python3 on PATH: %s", out).isZero();
    return out;
  }
}
