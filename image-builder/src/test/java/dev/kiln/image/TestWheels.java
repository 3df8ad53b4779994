package dev.kiln.image;

import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.definition.ContentKey;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.LockedPackage;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.io.OutputStream;
import java.net.URI;
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
import java.util.function.UnaryOperator;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipArchiveOutputStream;

/**
 * Builds wheel files for tests the way {@code bdist_wheel} does: the given files, a {@code WHEEL}
 * file, and a {@code RECORD} with the sha256 and size of every file. Hooks let a test damage the
 * result (a changed file after RECORD was written, a RECORD edited by hand, a bad WHEEL).
 */
final class TestWheels {
  /** The default layout of the Debian bookworm base (what its python3's sysconfig reports). */
  static final InstallLayout DEBIAN =
      new InstallLayout(
          "/usr/local/lib/python3.11/dist-packages",
          "/usr/local/lib/python3.11/dist-packages",
          "/usr/local/bin",
          "/usr/local",
          "/usr/local/include/python3.11",
          "/usr/bin/python3");

  /**
   * CPython 3.11.2 on glibc 2.36 x86_64 (as the Debian base reports it), installing as {@code l}.
   */
  static TargetEnvironment python(InstallLayout l) {
    return new TargetEnvironment(
        "3.11.2",
        "cpython",
        "cpython-311-x86_64-linux-gnu",
        "x86_64",
        "glibc",
        "2.36",
        l.purelib(),
        l.platlib(),
        l.scripts(),
        l.data(),
        l.headers(),
        l.interpreter());
  }

  /**
   * The recipe of UDF {@code udf} ({@code f(x) = x}, its name in a comment, so each name is its own
   * image) with {@code files} locked as they are named ({@code name-version-...whl}).
   */
  static BuildImage.Recipe udfRecipe(
      Runtimes.Runtime runtime,
      TargetEnvironment python,
      List<FetchInputs.Fetched> files,
      String udf,
      BaseFacts bases) {
    List<LockedPackage> packages = new ArrayList<>();
    for (FetchInputs.Fetched f : files) {
      String[] parts = f.name().split("-");
      packages.add(
          new LockedPackage(
              parts[0], parts[1], f.name(), URI.create("file://" + f.file()), f.digest().hex()));
    }
    return new BuildImage.Recipe(
        runtime,
        python,
        ContentKey.ofBytes(Digest.newSha256().digest(udf.getBytes(StandardCharsets.UTF_8))),
        "f",
        Map.of(
            "/kiln/udf/udf.py",
            ("def f(x):\n    return x  # " + udf + "\n").getBytes(StandardCharsets.UTF_8)),
        new Lock(packages),
        files,
        List.of(),
        bases);
  }

  /** A layout where every part goes somewhere else, so a test sees where each file went. */
  static final InstallLayout SPLIT =
      new InstallLayout(
          "/py/pure", "/py/plat", "/py/bin", "/py/data", "/py/include", "/opt/python/bin/python3");

  private final String distribution;
  private final String version;
  private final Map<String, byte[]> files = new LinkedHashMap<>();
  private final Map<String, Integer> modes = new LinkedHashMap<>();
  private String wheelFile;
  private UnaryOperator<String> recordEditor = UnaryOperator.identity();
  private final Map<String, byte[]> afterRecord = new LinkedHashMap<>();
  private String tags = "py3-none-any";

  TestWheels(String distribution, String version, boolean rootIsPurelib) {
    this.distribution = distribution;
    this.version = version;
    this.wheelFile =
        "Wheel-Version: 1.0\nGenerator: kiln-test\nRoot-Is-Purelib: "
            + rootIsPurelib
            + "\nTag: py3-none-any\n";
  }

  String distInfo() {
    return distribution + "-" + version + ".dist-info";
  }

  String dataDir() {
    return distribution + "-" + version + ".data";
  }

  String filename() {
    return distribution + "-" + version + "-" + tags + ".whl";
  }

  TestWheels tags(String tags) {
    this.tags = tags;
    return this;
  }

  TestWheels file(String path, String content) {
    return file(path, content.getBytes(StandardCharsets.UTF_8), 0644);
  }

  TestWheels file(String path, byte[] content, int mode) {
    files.put(path, content);
    modes.put(path, mode);
    return this;
  }

  /** Replaces the WHEEL file's text. */
  TestWheels wheelFile(String text) {
    this.wheelFile = text;
    return this;
  }

  /** Edits RECORD's text after it was generated. */
  TestWheels editRecord(UnaryOperator<String> editor) {
    this.recordEditor = editor;
    return this;
  }

  /** Puts a file in the zip that RECORD was not written for (or overrides one's content). */
  TestWheels afterRecord(String path, String content) {
    afterRecord.put(path, content.getBytes(StandardCharsets.UTF_8));
    return this;
  }

  /** Writes the wheel into {@code dir} under its file name. */
  Path write(Path dir) throws IOException {
    Map<String, byte[]> all = new LinkedHashMap<>(files);
    Map<String, Integer> allModes = new LinkedHashMap<>(modes);
    all.put(
        distInfo() + "/METADATA",
        ("Metadata-Version: 2.1\nName: " + distribution + "\nVersion: " + version + "\n")
            .getBytes(StandardCharsets.UTF_8));
    allModes.put(distInfo() + "/METADATA", 0644);
    if (wheelFile != null) {
      all.put(distInfo() + "/WHEEL", wheelFile.getBytes(StandardCharsets.UTF_8));
      allModes.put(distInfo() + "/WHEEL", 0644);
    }
    StringBuilder record = new StringBuilder();
    for (Map.Entry<String, byte[]> f : all.entrySet()) {
      record
          .append(f.getKey())
          .append(",sha256=")
          .append(sha256(f.getValue()))
          .append(',')
          .append(f.getValue().length)
          .append('\n');
    }
    record.append(distInfo()).append("/RECORD,,\n");
    String recordText = recordEditor.apply(record.toString());
    if (recordText != null) {
      all.put(distInfo() + "/RECORD", recordText.getBytes(StandardCharsets.UTF_8));
      allModes.put(distInfo() + "/RECORD", 0644);
    }
    afterRecord.forEach(
        (path, content) -> {
          all.put(path, content);
          allModes.putIfAbsent(path, 0644);
        });
    Files.createDirectories(dir);
    Path out = dir.resolve(filename());
    try (OutputStream file = Files.newOutputStream(out);
        ZipArchiveOutputStream zip = new ZipArchiveOutputStream(file)) {
      for (Map.Entry<String, byte[]> f : all.entrySet()) {
        ZipArchiveEntry entry = new ZipArchiveEntry(f.getKey());
        entry.setUnixMode(0100000 | allModes.get(f.getKey()));
        zip.putArchiveEntry(entry);
        zip.write(f.getValue());
        zip.closeArchiveEntry();
      }
    }
    return out;
  }

  static String sha256(byte[] content) {
    try {
      return Base64.getUrlEncoder()
          .withoutPadding()
          .encodeToString(MessageDigest.getInstance("SHA-256").digest(content));
    } catch (NoSuchAlgorithmException e) {
      throw new AssertionError(e);
    }
  }
}
