package dev.kiln.resolver;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;

/**
 * Builds real wheel files (PEP 427 zip: the package's files, {@code .data} directories, and a
 * {@code .dist-info} with METADATA, WHEEL, RECORD and entry points) for tests. Output is
 * byte-for-byte reproducible.
 */
public final class WheelBuilder {
  private final String name;
  private final String version;
  private String tag = "py3-none-any";
  private String build = "";
  private boolean purelib = true;
  private String requiresPython;
  private final List<String> requiresDist = new ArrayList<>();
  private final List<String> providesExtra = new ArrayList<>();
  private final Map<String, byte[]> files = new LinkedHashMap<>();
  private final Map<String, String> consoleScripts = new LinkedHashMap<>();

  private WheelBuilder(String name, String version) {
    this.name = name;
    this.version = version;
  }

  /**
   * A wheel of {@code name} {@code version}; it contains {@code <module>/__init__.py} defining
   * {@code VERSION} unless other files are added.
   */
  public static WheelBuilder wheel(String name, String version) {
    return new WheelBuilder(name, version);
  }

  /**
   * The compressed tag set, e.g. {@code cp311-cp311-manylinux_2_17_x86_64}; default py3-none-any.
   */
  public WheelBuilder tag(String tag) {
    this.tag = tag;
    this.purelib = tag.contains("-none-any");
    return this;
  }

  public WheelBuilder build(String buildTag) {
    this.build = buildTag;
    return this;
  }

  public WheelBuilder requires(String... requirements) {
    requiresDist.addAll(List.of(requirements));
    return this;
  }

  public WheelBuilder requiresPython(String spec) {
    this.requiresPython = spec;
    return this;
  }

  public WheelBuilder providesExtra(String... extras) {
    providesExtra.addAll(List.of(extras));
    return this;
  }

  /** Adds a file at {@code path} inside the wheel (relative to its root). */
  public WheelBuilder file(String path, String content) {
    return file(path, content.getBytes(StandardCharsets.UTF_8));
  }

  public WheelBuilder file(String path, byte[] content) {
    files.put(path, content);
    return this;
  }

  /**
   * Adds a file under {@code <name>-<version>.data/<scheme>/} (scheme: scripts, data, headers,
   * purelib, platlib).
   */
  public WheelBuilder dataFile(String scheme, String path, String content) {
    return file(distName() + "-" + version + ".data/" + scheme + "/" + path, content);
  }

  /** Adds a {@code console_scripts} entry point, e.g. {@code ("hello", "pkg.cli:main")}. */
  public WheelBuilder consoleScript(String command, String target) {
    consoleScripts.put(command, target);
    return this;
  }

  public String name() {
    return name;
  }

  public String version() {
    return version;
  }

  /** The Requires-Python the wheel declares, or null. */
  public String declaredRequiresPython() {
    return requiresPython;
  }

  /** The module name of the default package: the project name with '-' and '.' as '_'. */
  public String module() {
    return name.replace('-', '_').replace('.', '_').toLowerCase(java.util.Locale.ROOT);
  }

  private String distName() {
    return name.replace('-', '_').replace('.', '_');
  }

  public String filename() {
    return distName() + "-" + version + (build.isEmpty() ? "" : "-" + build) + "-" + tag + ".whl";
  }

  /** The METADATA file, as PEP 658 serves it next to the wheel. */
  public String metadata() {
    StringBuilder sb = new StringBuilder();
    sb.append("Metadata-Version: 2.1\n");
    sb.append("Name: ").append(name).append('\n');
    sb.append("Version: ").append(version).append('\n');
    if (requiresPython != null) {
      sb.append("Requires-Python: ").append(requiresPython).append('\n');
    }
    for (String e : providesExtra) {
      sb.append("Provides-Extra: ").append(e).append('\n');
    }
    for (String r : requiresDist) {
      sb.append("Requires-Dist: ").append(r).append('\n');
    }
    sb.append("\nA test package built by Kiln's tests.\n");
    return sb.toString();
  }

  /** The wheel's bytes. */
  public byte[] bytes() {
    Map<String, byte[]> content = new LinkedHashMap<>(files);
    if (content.isEmpty()) {
      content.put(
          module() + "/__init__.py",
          ("VERSION = \"" + version + "\"\n").getBytes(StandardCharsets.UTF_8));
    }
    String distInfo = distName() + "-" + version + ".dist-info/";
    content.put(distInfo + "METADATA", metadata().getBytes(StandardCharsets.UTF_8));
    StringBuilder wheel = new StringBuilder();
    wheel.append("Wheel-Version: 1.0\nGenerator: kiln-tests\n");
    wheel.append("Root-Is-Purelib: ").append(purelib).append('\n');
    for (String py : tag.split("-")[0].split("\\.")) {
      for (String abi : tag.split("-")[1].split("\\.")) {
        for (String plat : tag.split("-")[2].split("\\.")) {
          wheel
              .append("Tag: ")
              .append(py)
              .append('-')
              .append(abi)
              .append('-')
              .append(plat)
              .append('\n');
        }
      }
    }
    if (!build.isEmpty()) {
      wheel.append("Build: ").append(build).append('\n');
    }
    content.put(distInfo + "WHEEL", wheel.toString().getBytes(StandardCharsets.UTF_8));
    if (!consoleScripts.isEmpty()) {
      StringBuilder ep = new StringBuilder("[console_scripts]\n");
      consoleScripts.forEach((k, v) -> ep.append(k).append(" = ").append(v).append('\n'));
      content.put(distInfo + "entry_points.txt", ep.toString().getBytes(StandardCharsets.UTF_8));
    }
    StringBuilder record = new StringBuilder();
    content.forEach(
        (path, data) ->
            record
                .append(path)
                .append(",sha256=")
                .append(recordHash(data))
                .append(',')
                .append(data.length)
                .append('\n'));
    record.append(distInfo).append("RECORD,,\n");
    content.put(distInfo + "RECORD", record.toString().getBytes(StandardCharsets.UTF_8));

    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (ZipOutputStream zip = new ZipOutputStream(bytes)) {
      for (Map.Entry<String, byte[]> e : content.entrySet()) {
        ZipEntry z = new ZipEntry(e.getKey());
        // A fixed time in every zone, so the same wheel always has the same hash.
        z.setTimeLocal(java.time.LocalDateTime.of(1980, 1, 1, 0, 0));
        zip.putNextEntry(z);
        zip.write(e.getValue());
        zip.closeEntry();
      }
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return bytes.toByteArray();
  }

  /** Writes the wheel into {@code dir} and returns its path. */
  public Path writeTo(Path dir) throws IOException {
    return Files.write(Files.createDirectories(dir).resolve(filename()), bytes());
  }

  private static String recordHash(byte[] data) {
    try {
      return Base64.getUrlEncoder()
          .withoutPadding()
          .encodeToString(MessageDigest.getInstance("SHA-256").digest(data));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
