package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The runner's module bundles ({@code kiln_runner.module_bundles}, {@code kiln_modules.py}) as
 * PROTOCOL.md describes them (the image builder's {@code ModuleBundle} writes them; written here by
 * hand), in a host {@code python3}.
 */
class ModuleBundlesIT {
  @TempDir Path tmp;

  private record Entry(int kind, String path, String content) {}

  /** A bundle in the documented format. */
  private static byte[] bundle(List<Entry> entries) {
    int header = 12;
    for (Entry e : entries) {
      header += 3 + e.path().getBytes(StandardCharsets.UTF_8).length + 16;
    }
    ByteBuffer index = ByteBuffer.allocate(header).order(ByteOrder.LITTLE_ENDIAN);
    index.put("KILNMB1\n".getBytes(StandardCharsets.US_ASCII)).putInt(entries.size());
    ByteArrayOutputStream data = new ByteArrayOutputStream();
    for (Entry e : entries) {
      byte[] path = e.path().getBytes(StandardCharsets.UTF_8);
      byte[] content = e.content().getBytes(StandardCharsets.UTF_8);
      index.put((byte) e.kind()).putShort((short) path.length).put(path);
      index.putLong(header + data.size()).putLong(content.length);
      data.writeBytes(content);
    }
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    out.writeBytes(index.array());
    out.writeBytes(data.toByteArray());
    return out.toByteArray();
  }

  @Test
  void modulesComeFromBundlesUnlessThePathFinderWouldPickAnotherFile() throws Exception {
    Path site = tmp.resolve("site");
    Path pkg = Files.createDirectories(site.resolve("pkg"));
    // On disk, as the layer installs them; the bundle says otherwise, to tell which was used.
    Files.writeString(pkg.resolve("__init__.py"), "WHERE = 'disk'\n");
    Files.writeString(pkg.resolve("core.py"), "WHERE = 'disk'\n");
    Files.writeString(pkg.resolve("native.py"), "WHERE = 'disk'\n");
    Files.writeString(pkg.resolve("data.txt"), "data\n");
    Files.writeString(site.resolve("plain.py"), "WHERE = 'disk'\n");
    String s = site.toString();
    Path bundles = Files.createDirectories(tmp.resolve("modules"));
    Files.write(
        bundles.resolve("pkg.src.kmb"),
        bundle(
            List.of(
                new Entry(0, s + "/pkg/__init__.py", "WHERE = 'bundle'\n"),
                new Entry(0, s + "/pkg/core.py", "WHERE = 'bundle source'\n"),
                new Entry(0, s + "/pkg/native.py", "WHERE = 'bundle'\n"),
                // An extension module of the same name: the path finder decides.
                new Entry(2, s + "/pkg/native.cpython-311-x86_64-linux-gnu.so", ""))));
    Files.write(bundles.resolve("broken.pyc.kmb"), "KILNMB0\n".getBytes(StandardCharsets.UTF_8));

    Path runner = Files.createDirectories(tmp.resolve("runner"));
    for (Map.Entry<String, byte[]> f : RunnerFiles.runtimeFiles().entrySet()) {
      Files.write(runner.resolve(Path.of(f.getKey()).getFileName().toString()), f.getValue());
    }
    String script =
        String.join(
            "\n",
            "import sys, os",
            "sys.path.insert(0, " + quoted(runner) + ")",
            "import kiln_runner",
            "print('dirs', kiln_runner.module_bundles())",
            "print('env', os.environ.get('KILN_MODULE_BUNDLES'))",
            "sys.path.insert(0, " + quoted(site) + ")",
            "import pkg, pkg.core, pkg.native, plain, inspect, pkgutil",
            "from importlib import resources",
            "for m in (pkg, pkg.core, pkg.native, plain):",
            "    print(m.__name__, m.WHERE, type(m.__spec__.loader).__name__,"
                + " os.path.relpath(m.__file__, "
                + quoted(site)
                + "))",
            "print('source', inspect.getsource(pkg.core).strip())",
            "print('modules', sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)))",
            "print('resource', resources.files('pkg').joinpath('data.txt').read_text().strip())",
            "");
    ProcessBuilder builder =
        new ProcessBuilder("python3", "-B", "-c", script).redirectErrorStream(true);
    builder.environment().put("KILN_MODULE_BUNDLES", bundles.toString());
    Process p = builder.start();
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.exitValue()).as(out).isZero();

    List<String> lines = new ArrayList<>(out.lines().toList());
    assertThat(lines)
        .containsExactly(
            "kiln_modules: broken.pyc.kmb is skipped: not a module bundle",
            "dirs 2",
            "env None",
            "pkg bundle BundleLoader pkg/__init__.py",
            "pkg.core bundle source BundleLoader pkg/core.py",
            "pkg.native disk SourceFileLoader pkg/native.py",
            "plain disk SourceFileLoader plain.py",
            // inspect and tracebacks read the file in the image, which in an image is the same.
            "source WHERE = 'disk'",
            "modules ['core', 'native']",
            "resource data");
  }

  private static String quoted(Path p) {
    return "'" + p.toString().replace("'", "\\'") + "'";
  }
}
