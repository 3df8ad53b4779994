package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.function.Function;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * How byte-code layers are made from what the base's Python prints, with that Python played by the
 * test (ByteCodeIT runs the real one): the layer's files, the cache, and output that arrives
 * damaged.
 */
class PycLayersTest {
  static final TargetEnvironment PYTHON = TestWheels.python(TestWheels.SPLIT);

  @TempDir Path tmp;

  /** The Python side: "compiles" each source under the roots it gets to fixed bytes. */
  static final class FakePython implements PycLayers.Compiler {
    final List<List<String>> calls = new ArrayList<>();
    final List<Function<String, String>> damage = new ArrayList<>();

    @Override
    public String compile(List<LayerSpec> layers, List<String> argv) {
      calls.add(argv.subList(3, argv.size()));
      String out = output(argv);
      return damage.isEmpty() ? out : damage.removeFirst().apply(out);
    }

    /** What the script prints for the test wheels' roots in {@code argv}. */
    static String output(List<String> argv) {
      StringBuilder out = new StringBuilder("cpython-311\n");
      int files = 0;
      for (String root : argv.subList(3, argv.size())) {
        for (String source : List.of(root + "/__init__.py", root + "/util.py")) {
          byte[] pyc = pyc(source);
          out.append(source)
              .append('\t')
              .append(HexFormat.of().formatHex(WheelRecord.digest("sha256").digest(pyc)))
              .append('\t')
              .append(Base64.getEncoder().encodeToString(pyc))
              .append('\n');
          files++;
        }
      }
      out.append("done ").append(files).append('\n');
      return out.toString();
    }
  }

  static byte[] pyc(String source) {
    return ("pyc of " + source).getBytes(StandardCharsets.UTF_8);
  }

  /** A test wheel's file and its layer. */
  record Wheel(FetchInputs.Fetched file, LayerSpec layer) {}

  private Wheel wheel(WheelLayers wheels, String name) throws Exception {
    return wheel(wheels, name, tmp.resolve("wheels"));
  }

  /** A wheel with two Python sources of 6 bytes each and a data file, and its layer. */
  static Wheel wheel(WheelLayers wheels, String name, Path dir) throws Exception {
    Path file =
        new TestWheels(name, "1.0", true)
            .file(name + "/__init__.py", "X = 1\n")
            .file(name + "/util.py", "Y = 2\n")
            .file(name + "/data.txt", "not python\n")
            .write(dir);
    Digest digest;
    try (InputStream in = Files.newInputStream(file)) {
      digest = Digest.of(in);
    }
    String filename = file.getFileName().toString();
    return new Wheel(
        new FetchInputs.Fetched(filename, digest, file),
        wheels.layerFor(file, filename, TestWheels.SPLIT));
  }

  /** Compiles what the cache lacks (a sandbox per wheel), then each wheel's byte-code layer. */
  private static List<LayerSpec> layersFor(
      PycLayers pyc, List<Wheel> wheels, TargetEnvironment python, PycLayers.Compiler compiler)
      throws Exception {
    List<FetchInputs.Fetched> files = wheels.stream().map(Wheel::file).toList();
    pyc.compile(files, wheels.stream().map(Wheel::layer).toList(), python, compiler, 2);
    List<LayerSpec> out = new ArrayList<>();
    List<PycLayers.Cached> cached = pyc.cached(files, python);
    for (int i = 0; i < wheels.size(); i++) {
      LayerBlob blob = cached.get(i).layer();
      out.add(blob == null ? null : LayerSpec.ofBlob(PycLayers.name(wheels.get(i).layer()), blob));
    }
    return out;
  }

  @Test
  void eachWheelGetsALayerOfItsByteCodeNextToItsSourcesAndItIsKept() throws Exception {
    WheelLayers wheels = new WheelLayers(tmp.resolve("work"));
    List<Wheel> sources = List.of(wheel(wheels, "alpha"), wheel(wheels, "beta"));
    FakePython python = new FakePython();

    List<LayerSpec> layers = layersFor(new PycLayers(wheels, 0), sources, PYTHON, python);

    assertThat(python.calls.stream().flatMap(List::stream))
        .containsExactlyInAnyOrder("/py/pure/alpha", "/py/pure/beta");
    assertThat(layers).hasSize(2);
    assertThat(layers.get(0).name()).isEqualTo("byte code alpha-1.0-py3-none-any.whl");
    assertThat(layers.get(0).blob().mediaType()).isEqualTo(LayerBlob.TAR);
    Map<String, LayoutCheck.Entry> alpha =
        LayoutCheck.entries(layers.get(0).blob().file()).stream()
            .collect(Collectors.toMap(LayoutCheck.Entry::name, e -> e));
    List<String> names =
        LayoutCheck.entries(layers.get(0).blob().file()).stream()
            .map(LayoutCheck.Entry::name)
            .toList();
    assertThat(names.get(2)).matches("kiln/modules/[0-9a-z_.-]+\\.pyc\\.kmb");
    // The same byte code as one module bundle, under the sources' paths.
    ByteBuffer bundle =
        ByteBuffer.wrap(alpha.get(names.get(2)).content()).order(ByteOrder.LITTLE_ENDIAN);
    bundle.position(8);
    assertThat(bundle.getInt()).isEqualTo(2);
    assertThat(bundle.get()).as("byte code").isEqualTo((byte) 1);
    byte[] path = new byte[bundle.getShort()];
    bundle.get(path);
    assertThat(new String(path, StandardCharsets.UTF_8)).isEqualTo("/py/pure/alpha/__init__.py");
    int offset = Math.toIntExact(bundle.getLong());
    byte[] first = pyc("/py/pure/alpha/__init__.py");
    assertThat(bundle.getLong()).isEqualTo(first.length);
    assertThat(Arrays.copyOfRange(alpha.get(names.get(2)).content(), offset, offset + first.length))
        .isEqualTo(first);
    assertThat(names)
        .as("sorted, every parent listed")
        .containsExactly(
            "kiln/",
            "kiln/modules/",
            names.get(2),
            "py/",
            "py/pure/",
            "py/pure/alpha/",
            "py/pure/alpha/__pycache__/",
            "py/pure/alpha/__pycache__/__init__.cpython-311.pyc",
            "py/pure/alpha/__pycache__/util.cpython-311.pyc");
    LayoutCheck.Entry init = alpha.get("py/pure/alpha/__pycache__/__init__.cpython-311.pyc");
    assertThat(init.content()).isEqualTo(pyc("/py/pure/alpha/__init__.py"));
    assertThat(init.mode() & 0777).isEqualTo(0644);
    assertThat(init.mtimeSeconds()).isEqualTo(1);

    // Kept: the same wheels need no compile, also after a restart.
    int calls = python.calls.size();
    List<LayerSpec> again =
        layersFor(new PycLayers(new WheelLayers(tmp.resolve("work")), 0), sources, PYTHON, python);
    assertThat(python.calls).hasSize(calls);
    assertThat(again.get(1).blob()).isEqualTo(layers.get(1).blob());

    // Collected with the wheel layers once unused.
    assertThat(wheels.collect(java.time.Instant.now().plusSeconds(60), false).layers())
        .isEqualTo(4);
    assertThat(layers.get(0).blob().file()).doesNotExist();
    assertThat(sources.get(0).layer().blob().file()).doesNotExist();
    sources = List.of(wheel(wheels, "alpha"), wheel(wheels, "beta"));

    // Another Python compiles its own.
    TargetEnvironment other =
        new TargetEnvironment(
            "3.11.9",
            PYTHON.implementation(),
            PYTHON.soabi(),
            PYTHON.machine(),
            PYTHON.libc(),
            PYTHON.libcVersion(),
            PYTHON.purelib(),
            PYTHON.platlib(),
            PYTHON.scripts(),
            PYTHON.data(),
            PYTHON.include(),
            PYTHON.interpreter());
    layersFor(new PycLayers(wheels, 0), sources, other, python);
    assertThat(python.calls.size()).isGreaterThan(calls);
  }

  @Test
  void wheelsWithFewSourcesGetNoByteCodeAndCostNoSandbox() throws Exception {
    WheelLayers wheels = new WheelLayers(tmp.resolve("work"));
    List<Wheel> sources = List.of(wheel(wheels, "alpha"), wheel(wheels, "beta"));
    FakePython python = new FakePython();
    // alpha's and beta's sources are 12 bytes each
    List<LayerSpec> layers = layersFor(new PycLayers(wheels, 13), sources, PYTHON, python);
    assertThat(layers).containsExactly(null, null);
    assertThat(python.calls).isEmpty();
    // Known to get none, also after a restart: a build does not ask again.
    assertThat(
            new PycLayers(new WheelLayers(tmp.resolve("work")), 13)
                .cached(sources.stream().map(Wheel::file).toList(), PYTHON))
        .allMatch(c -> c.known() && c.layer() == null);
    assertThat(layersFor(new PycLayers(wheels, 12), sources, PYTHON, python)).doesNotContainNull();
    assertThat(python.calls).isNotEmpty();
  }

  @Test
  void damagedOutputIsCompiledAgainAndFailsWhenItStaysDamaged() throws Exception {
    WheelLayers wheels = new WheelLayers(tmp.resolve("work"));
    List<Wheel> sources = List.of(wheel(wheels, "alpha"));
    FakePython python = new FakePython();
    // Bytes lost in the middle of a line: the hash no longer matches.
    python.damage.add(out -> out.substring(0, 80) + out.substring(84));
    List<LayerSpec> layers = layersFor(new PycLayers(wheels, 0), sources, PYTHON, python);
    assertThat(python.calls).hasSize(2);
    assertThat(LayoutCheck.entries(layers.get(0).blob().file()))
        .extracting(LayoutCheck.Entry::name)
        .contains("py/pure/alpha/__pycache__/util.cpython-311.pyc");

    WheelLayers fresh = new WheelLayers(tmp.resolve("fresh"));
    List<Wheel> freshSources = List.of(wheel(fresh, "gamma"));
    FakePython truncated = new FakePython();
    Function<String, String> cut = out -> out.substring(0, out.indexOf("done"));
    truncated.damage.addAll(List.of(cut, cut));
    assertThatThrownBy(() -> layersFor(new PycLayers(fresh, 0), freshSources, PYTHON, truncated))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("arrived damaged twice")
        .hasMessageContaining("ended early");
  }
}
