package dev.kiln.image;

import dev.kiln.cache.Digest;
import dev.kiln.resolver.Requirement;
import dev.kiln.resolver.WheelFilename;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.zip.ZipException;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.archivers.zip.ZipArchiveEntry;
import org.apache.commons.compress.archivers.zip.ZipFile;

/**
 * Installs one wheel into an image layer: a tar (plain, or gzip-compressed) of the files pip would
 * install, at their paths in the image, written straight from the wheel with nothing unpacked to
 * disk. Follows the binary distribution format (PEP 427/491) as pip does on POSIX:
 *
 * <ul>
 *   <li>the root goes to purelib or platlib ({@code Root-Is-Purelib}); {@code
 *       <name>.data/{purelib,platlib,scripts,headers,data}} to the layout's directories;
 *   <li>scripts that start with {@code #!python} get the layout's interpreter instead, and are
 *       executable; other files are 0755 when the wheel marks them executable, else 0644;
 *   <li>{@code console_scripts} / {@code gui_scripts} entry points become launcher scripts;
 *   <li>the {@code .dist-info} gets {@code INSTALLER} and a new {@code RECORD} listing every
 *       installed file (paths relative to the site-packages directory holding the {@code
 *       .dist-info}) with its sha256 and size.
 * </ul>
 *
 * <p>Every file is checked against the wheel's {@code RECORD} as it streams into the layer (hash
 * and size), so a damaged or tampered wheel is rejected (the caller discards the half-written
 * layer). Nothing is placed outside the layout's directories: paths with {@code ..}, absolute paths
 * and links are refused. No {@code .pyc} files are compiled: that needs the target's Python.
 *
 * <p>The layer is reproducible, in the form Jib gives its own layers: entries sorted by path, every
 * parent directory listed (0755), owner root (uid and gid 0, no names), modification time one
 * second after the epoch, PAX headers for long names. Its bytes depend only on the wheel, the
 * layout and the compression.
 *
 * <p>Why no unpacking: creating thousands of files (numpy has 1,045, the 30 packages of the build
 * benchmark 8,184) and reading them back to tar them cost more than everything else in a cold
 * build, and far more when other work on the machine contends for the file system.
 */
final class WheelInstall {
  /** Bigger than any sane WHEEL, RECORD or entry_points.txt; guards the heap against a bad zip. */
  private static final int MAX_METADATA_BYTES = 64 << 20;

  /** Scripts are rewritten in memory; real ones are a few KB. */
  private static final int MAX_SCRIPT_BYTES = 16 << 20;

  /** Larger sources stay out of the layer's {@link ModuleBundle} (generated tables, mostly). */
  private static final long MAX_BUNDLED = 8 << 20;

  private static final byte[] PYTHON_SHEBANG = "#!python".getBytes(StandardCharsets.US_ASCII);
  private static final Set<String> RECORD_FILES = Set.of("RECORD", "RECORD.jws", "RECORD.p7s");

  /** The layer: its digests and size, and how many files it installs. */
  record Result(Digest digest, Digest diffId, long size, int files) {}

  /** One file of the layer: copied from the wheel (and verified) or generated here. */
  private record Planned(
      int mode, long size, ZipArchiveEntry entry, WheelRecord.Row row, byte[] bytes) {}

  private final Path wheelFile;
  private final WheelFilename name;
  private final InstallLayout layout;
  private final byte[] buffer = new byte[1 << 16];

  /** Path in the image (without the leading slash) → what goes there, sorted as in the tar. */
  private final TreeMap<String, Planned> plan = new TreeMap<>();

  /** Path in the image → the RECORD row pip would write for it. */
  private final Map<String, String> installedRecord = new TreeMap<>();

  private WheelInstall(Path wheelFile, WheelFilename name, InstallLayout layout) {
    this.wheelFile = wheelFile;
    this.name = name;
    this.layout = layout;
  }

  /**
   * Writes the wheel's layer to {@code out}: a plain tar when {@code gzipLevel} is {@link
   * ImageBuilder#UNCOMPRESSED}, else gzip-compressed at that level.
   */
  static Result install(
      Path wheelFile, WheelFilename name, InstallLayout layout, Path out, int gzipLevel)
      throws IOException {
    return new WheelInstall(wheelFile, name, layout).run(out, gzipLevel);
  }

  private Result run(Path out, int gzipLevel) throws IOException {
    ZipFile zip;
    try {
      zip = ZipFile.builder().setPath(wheelFile).get();
    } catch (IOException e) {
      throw invalid("it is not a readable zip archive (" + e.getMessage() + ")", e);
    }
    try (zip) {
      plan(zip);
      return write(zip, out, gzipLevel);
    }
  }

  /** Decides where every file goes and checks what can be checked before copying. */
  private void plan(ZipFile zip) throws IOException {
    List<ZipArchiveEntry> files = files(zip);
    String distInfo = distInfoDir(files);
    String dataDir = distInfo.substring(0, distInfo.length() - ".dist-info".length()) + ".data";
    String project = distInfo.substring(0, distInfo.indexOf('-'));

    Map<String, ZipArchiveEntry> byName = new HashMap<>();
    files.forEach(f -> byName.put(f.getName(), f));
    ZipArchiveEntry wheelMeta = byName.get(distInfo + "/WHEEL");
    if (wheelMeta == null) {
      throw invalid("it has no " + distInfo + "/WHEEL file", null);
    }
    boolean rootIsPurelib = checkWheelFile(text(zip, wheelMeta));
    ZipArchiveEntry recordEntry = byName.get(distInfo + "/RECORD");
    if (recordEntry == null) {
      throw invalid("it has no " + distInfo + "/RECORD file", null);
    }
    Map<String, WheelRecord.Row> record =
        WheelRecord.parse(name.filename(), text(zip, recordEntry));

    String rootDir = rootIsPurelib ? layout.purelib() : layout.platlib();
    Set<String> seen = new HashSet<>();
    for (ZipArchiveEntry entry : files) {
      String path = entry.getName();
      seen.add(path);
      if (path.startsWith(distInfo + "/")
          && RECORD_FILES.contains(path.substring(distInfo.length() + 1))) {
        continue; // replaced by the RECORD of the installed files; signatures no longer apply
      }
      WheelRecord.Row row = record.get(path);
      if (row == null || !row.hasHash()) {
        throw tampered(path + " is not listed with a hash in RECORD");
      }
      boolean script = false;
      String target;
      if (path.startsWith(dataDir + "/")) {
        String[] parts = path.substring(dataDir.length() + 1).split("/", 2);
        if (parts.length < 2) {
          throw invalid(path + " is directly in " + dataDir + "/, not in a scheme directory", null);
        }
        String base =
            switch (parts[0]) {
              case "purelib" -> layout.purelib();
              case "platlib" -> layout.platlib();
              case "scripts" -> layout.scripts();
              case "data" -> layout.data();
              case "headers" -> layout.headers() + "/" + project;
              default ->
                  throw invalid(
                      path
                          + " is in "
                          + dataDir
                          + "/"
                          + parts[0]
                          + ", which is not one of purelib, platlib, scripts, headers, data",
                      null);
            };
        script = parts[0].equals("scripts");
        target = join(base, parts[1]);
      } else {
        target = join(rootDir, path);
      }
      boolean executable = script || (entry.getUnixMode() & 0111) != 0;
      int mode = executable ? 0755 : 0644;
      if (script) {
        planScript(zip, entry, row, target, mode, rootDir);
      } else {
        planCopy(zip, entry, row, target, mode, rootDir);
      }
    }
    for (WheelRecord.Row row : record.values()) {
      if (!seen.contains(row.path())
          && !(row.path().startsWith(distInfo + "/")
              && RECORD_FILES.contains(row.path().substring(distInfo.length() + 1)))) {
        throw tampered("RECORD lists " + row.path() + ", which the wheel does not contain");
      }
    }

    ZipArchiveEntry entryPointsEntry = byName.get(distInfo + "/entry_points.txt");
    if (entryPointsEntry != null) {
      for (EntryPoints.Script s :
          EntryPoints.scripts(name.filename(), text(zip, entryPointsEntry))) {
        String launcher = EntryPoints.launcher(s, layout.interpreter());
        planBytes(join(layout.scripts(), s.name()), launcher, 0755, rootDir);
      }
    }
    planBytes(join(rootDir, distInfo + "/INSTALLER"), "kiln\n", 0644, rootDir);

    String recordPath = join(rootDir, distInfo + "/RECORD");
    installedRecord.put(
        recordPath, WheelRecord.row(relative(rootDir, recordPath), "", OptionalLong.empty()));
    StringBuilder text = new StringBuilder();
    // Sorted by path in the image: the same wheel and layout give the same bytes.
    installedRecord.values().forEach(text::append);
    claim(recordPath, new Planned(0644, -1, null, null, WheelRecord.utf8(text.toString())));
  }

  /** A file copied as it is: size from the zip, hash from RECORD, both checked while copying. */
  private void planCopy(
      ZipFile zip,
      ZipArchiveEntry entry,
      WheelRecord.Row row,
      String target,
      int mode,
      String siteDir)
      throws IOException {
    long size = entry.getSize();
    if (size < 0) {
      throw invalid(entry.getName() + " has no size in the zip's central directory", null);
    }
    if (row.size() >= 0 && row.size() != size) {
      throw tampered(
          entry.getName() + " is " + size + " bytes but RECORD says " + row.size() + " bytes");
    }
    byte[] sha256;
    if (row.algorithm().equals("sha256")) {
      sha256 = row.digest();
    } else {
      // The installed RECORD lists sha256; RECORD gave another algorithm, so hash it now (and
      // check it against RECORD on the way; it is checked again when it is copied).
      sha256 = verified(zip, entry, row, "sha256");
    }
    claim(target, new Planned(mode, size, entry, row, null));
    installedRecord.put(
        target,
        WheelRecord.row(
            relative(siteDir, target),
            WheelRecord.hashField("sha256", sha256),
            OptionalLong.of(size)));
  }

  /** A script: read, checked, and given the layout's interpreter if it starts with #!python. */
  private void planScript(
      ZipFile zip,
      ZipArchiveEntry entry,
      WheelRecord.Row row,
      String target,
      int mode,
      String siteDir)
      throws IOException {
    byte[] content;
    try (InputStream in = zip.getInputStream(entry)) {
      content = in.readNBytes(MAX_SCRIPT_BYTES + 1);
    } catch (ZipException e) {
      throw tampered(entry.getName() + " cannot be decompressed (" + e.getMessage() + ")");
    }
    if (content.length > MAX_SCRIPT_BYTES) {
      throw invalid(entry.getName() + " is larger than 16 MB; that is not a script", null);
    }
    check(entry, row, WheelRecord.digest(row.algorithm()).digest(content), content.length);
    if (content.length >= PYTHON_SHEBANG.length
        && Arrays.equals(
            content, 0, PYTHON_SHEBANG.length, PYTHON_SHEBANG, 0, PYTHON_SHEBANG.length)) {
      // The whole first line goes (it may be #!pythonw or carry arguments), as pip does.
      int end = 0;
      while (end < content.length && content[end] != '\n') {
        end++;
      }
      byte[] shebang = ("#!" + layout.interpreter() + "\n").getBytes(StandardCharsets.UTF_8);
      int rest = Math.min(content.length, end + 1);
      byte[] rewritten = new byte[shebang.length + content.length - rest];
      System.arraycopy(shebang, 0, rewritten, 0, shebang.length);
      System.arraycopy(content, rest, rewritten, shebang.length, content.length - rest);
      content = rewritten;
    }
    planBytes(target, content, mode, siteDir);
  }

  private void planBytes(String target, String content, int mode, String siteDir)
      throws InvalidWheelException {
    planBytes(target, content.getBytes(StandardCharsets.UTF_8), mode, siteDir);
  }

  private void planBytes(String target, byte[] content, int mode, String siteDir)
      throws InvalidWheelException {
    claim(target, new Planned(mode, content.length, null, null, content));
    installedRecord.put(
        target,
        WheelRecord.row(
            relative(siteDir, target),
            WheelRecord.hashField("sha256", WheelRecord.digest("sha256").digest(content)),
            OptionalLong.of(content.length)));
  }

  /** Reserves a path in the image for one file. */
  private void claim(String target, Planned file) throws InvalidWheelException {
    if (plan.putIfAbsent(target.substring(1), file) != null) {
      throw invalid("two of its files would be installed as " + target, null);
    }
  }

  /** Writes the planned files, and their parent directories, as a gzip tar. */
  private Result write(ZipFile zip, Path out, int gzipLevel) throws IOException {
    TreeMap<String, Planned> entries = new TreeMap<>(plan);
    addModuleBundle(zip, entries);
    TreeSet<String> dirs = new TreeSet<>();
    for (String path : entries.keySet()) {
      for (int slash = path.indexOf('/'); slash > 0; slash = path.indexOf('/', slash + 1)) {
        dirs.add(path.substring(0, slash + 1));
      }
    }
    dirs.forEach(d -> entries.put(d, null));

    MessageDigest compressed = WheelRecord.digest("sha256");
    MessageDigest uncompressed = WheelRecord.digest("sha256");
    boolean plain = gzipLevel == ImageBuilder.UNCOMPRESSED;
    try (OutputStream file =
            new DigestOutputStream(
                new BufferedOutputStream(Files.newOutputStream(out), 1 << 16), compressed);
        OutputStream gzip = plain ? file : new Gzip(file, gzipLevel);
        TarArchiveOutputStream tar =
            new TarArchiveOutputStream(plain ? gzip : new DigestOutputStream(gzip, uncompressed))) {
      tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
      tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
      for (Map.Entry<String, Planned> e : entries.entrySet()) {
        Planned f = e.getValue();
        tar.putArchiveEntry(
            f == null
                ? TarEntries.header(e.getKey(), -1, 0)
                : TarEntries.header(
                    e.getKey(), f.mode(), f.bytes() != null ? f.bytes().length : f.size()));
        if (f != null && f.bytes() != null) {
          tar.write(f.bytes());
        } else if (f != null) {
          copy(zip, f, tar);
        }
        tar.closeArchiveEntry();
      }
      tar.finish();
    }
    Digest digest = Digest.fromSha(compressed);
    return new Result(
        digest, plain ? digest : Digest.fromSha(uncompressed), Files.size(out), plan.size());
  }

  /**
   * Adds the layer's {@link ModuleBundle} of sources to {@code entries}. The sources are read from
   * the zip (and checked) here, and then written to the tar from memory.
   */
  private void addModuleBundle(ZipFile zip, TreeMap<String, Planned> entries) throws IOException {
    ModuleBundle modules = new ModuleBundle();
    for (Map.Entry<String, Planned> e : entries.entrySet()) {
      String path = "/" + e.getKey();
      Planned f = e.getValue();
      if (!ModuleBundle.bundled(path, layout.purelib(), layout.platlib())) {
        continue;
      }
      if (ModuleBundle.isExtension(path)) {
        modules.add(ModuleBundle.OTHER, path, new byte[0]);
      } else if (path.endsWith(".py") && f.size() <= MAX_BUNDLED) {
        byte[] source = f.bytes();
        if (source == null) {
          ByteArrayOutputStream out = new ByteArrayOutputStream((int) f.size());
          copy(zip, f, out);
          source = out.toByteArray();
          e.setValue(new Planned(f.mode(), f.size(), null, null, source));
        }
        modules.add(ModuleBundle.SOURCE, path, source);
      }
    }
    if (!modules.isEmpty()) {
      byte[] bytes = modules.toBytes();
      entries.put(
          ModuleBundle.target(name.filename().replaceFirst("\\.whl$", ""), ModuleBundle.SOURCE),
          new Planned(0644, bytes.length, null, null, bytes));
    }
  }

  /** Streams one file from the zip into the tar, checking size and hash against RECORD. */
  private void copy(ZipFile zip, Planned f, OutputStream tar) throws IOException {
    MessageDigest hash = WheelRecord.digest(f.row().algorithm());
    long size = 0;
    try (InputStream in = zip.getInputStream(f.entry())) {
      int n;
      while ((n = in.read(buffer)) > 0) {
        size += n;
        if (size > f.size()) {
          throw tampered(
              f.entry().getName() + " is longer than the " + f.size() + " bytes the zip declares");
        }
        hash.update(buffer, 0, n);
        tar.write(buffer, 0, n);
      }
    } catch (ZipException e) {
      throw tampered(f.entry().getName() + " cannot be decompressed (" + e.getMessage() + ")");
    }
    check(f.entry(), f.row(), hash.digest(), size);
    if (size != f.size()) {
      throw tampered(
          f.entry().getName()
              + " is "
              + size
              + " bytes, not the "
              + f.size()
              + " the zip declares");
    }
  }

  /** Hashes a file with {@code algorithm}, checking it against RECORD on the way. */
  private byte[] verified(ZipFile zip, ZipArchiveEntry entry, WheelRecord.Row row, String algorithm)
      throws IOException {
    MessageDigest expected = WheelRecord.digest(row.algorithm());
    MessageDigest wanted = WheelRecord.digest(algorithm);
    long size = 0;
    try (InputStream in = zip.getInputStream(entry)) {
      int n;
      while ((n = in.read(buffer)) > 0) {
        expected.update(buffer, 0, n);
        wanted.update(buffer, 0, n);
        size += n;
      }
    } catch (ZipException e) {
      throw tampered(entry.getName() + " cannot be decompressed (" + e.getMessage() + ")");
    }
    check(entry, row, expected.digest(), size);
    return wanted.digest();
  }

  private void check(ZipArchiveEntry entry, WheelRecord.Row row, byte[] actual, long size)
      throws InvalidWheelException {
    if (!MessageDigest.isEqual(actual, row.digest())) {
      throw tampered(entry.getName() + " does not match the " + row.algorithm() + " in RECORD");
    }
    if (row.size() >= 0 && row.size() != size) {
      throw tampered(
          entry.getName() + " is " + size + " bytes but RECORD says " + row.size() + " bytes");
    }
  }

  /** The regular files of the zip, after checking every name is a safe relative path. */
  private List<ZipArchiveEntry> files(ZipFile zip) throws InvalidWheelException {
    List<ZipArchiveEntry> files = new ArrayList<>();
    Set<String> names = new HashSet<>();
    for (ZipArchiveEntry entry : Collections.list(zip.getEntriesInPhysicalOrder())) {
      String path = entry.getName();
      if (!names.add(path)) {
        throw tampered("it has two entries named " + path);
      }
      if (entry.isDirectory()) {
        continue; // directories come from the files' paths; empty ones are not installed (pip)
      }
      if (entry.isUnixSymlink()) {
        throw invalid(path + " is a symbolic link; wheels may only contain regular files", null);
      }
      boolean safe =
          !path.isEmpty()
              && !path.startsWith("/")
              && path.indexOf('\\') < 0
              && path.chars().noneMatch(c -> c < 0x20 || c == 0x7f)
              && Arrays.stream(path.split("/", -1))
                  .noneMatch(s -> s.isEmpty() || s.equals(".") || s.equals(".."));
      if (!safe) {
        throw invalid(
            "entry '" + path.replaceAll("\\p{Cntrl}", "?") + "' is not a safe relative path", null);
      }
      files.add(entry);
    }
    return files;
  }

  /** The one top-level {@code .dist-info} directory, which must belong to this distribution. */
  private String distInfoDir(List<ZipArchiveEntry> files) throws InvalidWheelException {
    Set<String> dirs = new TreeSet<>();
    for (ZipArchiveEntry f : files) {
      int slash = f.getName().indexOf('/');
      if (slash > 0 && f.getName().substring(0, slash).endsWith(".dist-info")) {
        dirs.add(f.getName().substring(0, slash));
      }
    }
    if (dirs.size() != 1) {
      throw invalid(
          dirs.isEmpty()
              ? "it has no .dist-info directory"
              : "it has " + dirs.size() + " .dist-info directories " + dirs + ", expected one",
          null);
    }
    String dir = dirs.iterator().next();
    int dash = dir.indexOf('-');
    if (dash <= 0 || !Requirement.normalizeName(dir.substring(0, dash)).equals(name.name())) {
      throw invalid(
          "its metadata directory "
              + dir
              + " does not belong to distribution "
              + name.distribution()
              + " named by the file name",
          null);
    }
    return dir;
  }

  /**
   * Checks {@code Wheel-Version} (1.x: this installer knows 1.0; a newer minor still installs, as
   * the spec asks) and returns {@code Root-Is-Purelib}.
   */
  private boolean checkWheelFile(String text) throws InvalidWheelException {
    Map<String, String> fields = new HashMap<>();
    for (String line : text.split("\r?\n")) {
      int colon = line.indexOf(':');
      if (colon > 0 && !Character.isWhitespace(line.charAt(0))) {
        fields.putIfAbsent(line.substring(0, colon).strip(), line.substring(colon + 1).strip());
      }
    }
    String version = fields.get("Wheel-Version");
    if (version == null) {
      throw invalid("its WHEEL file has no Wheel-Version", null);
    }
    if (!version.matches("1(\\.\\d+)?")) {
      throw invalid(
          "it is in wheel format "
              + version
              + "; Kiln installs wheel format 1.x; use a wheel built for format 1.0",
          null);
    }
    return "true".equalsIgnoreCase(fields.getOrDefault("Root-Is-Purelib", "false"));
  }

  private String text(ZipFile zip, ZipArchiveEntry entry) throws IOException {
    if (entry.getSize() > MAX_METADATA_BYTES) {
      throw invalid(
          entry.getName() + " is " + entry.getSize() + " bytes, too big for metadata", null);
    }
    try (InputStream in = zip.getInputStream(entry)) {
      byte[] bytes = in.readNBytes(MAX_METADATA_BYTES + 1);
      if (bytes.length > MAX_METADATA_BYTES) {
        throw invalid(entry.getName() + " is too big for metadata", null);
      }
      return new String(bytes, StandardCharsets.UTF_8);
    }
  }

  /** {@code base/relative}, where relative is an already checked relative path. */
  private static String join(String base, String relative) {
    return base.equals("/") ? "/" + relative : base + "/" + relative;
  }

  /** The path of {@code target} relative to {@code dir}, with {@code ..} where needed (as pip). */
  static String relative(String dir, String target) {
    return Path.of(dir).relativize(Path.of(target)).toString();
  }

  private InvalidWheelException invalid(String problem, Throwable cause) {
    return new InvalidWheelException(
        "wheel " + name.filename() + " is malformed: " + problem + "; use a well-formed wheel",
        cause);
  }

  private InvalidWheelException tampered(String problem) {
    return new InvalidWheelException(
        "wheel "
            + name.filename()
            + " is damaged or was tampered with: "
            + problem
            + "; download it again from a trusted index");
  }
}
