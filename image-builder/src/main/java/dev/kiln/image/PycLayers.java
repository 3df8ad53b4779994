package dev.kiln.image;

import dev.kiln.base.KilnException;
import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.resolver.TargetEnvironment;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.zip.GZIPInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The byte code of wheel layers, one layer of {@code __pycache__/*.pyc} files per wheel layer, so
 * that a runner imports packages without compiling them on every start (runners never write byte
 * code: {@code PYTHONDONTWRITEBYTECODE=1}).
 *
 * <p>Compiled by the base image's own Python (its magic number and cache tag are what count), in a
 * sandbox ({@link Compiler}): {@link #SCRIPT} makes of every {@code .py} file the bytes that {@code
 * python3 -m compileall -q --invalidation-mode unchecked-hash} writes (py_compile's {@code
 * UNCHECKED_HASH}: magic number, flags, the source's hash, the marshalled code; checked byte for
 * byte against py_compile), but in memory: writing and reading back a file per source costs under
 * gVisor (numpy and pandas: 3.6 s with py_compile, 2.6 s so). {@code tests} directories are skipped
 * (runners do not import them; pandas' are 6 of its 8 s of compiling). Such files are deterministic
 * (no source time in them) and used without looking at the source. The wheel layers of one build
 * that lack byte code are compiled together, in as many sandboxes as the caller gives (each gets
 * one core), split by the size of their sources; builds compile in the background in one ({@link
 * PycBackground}).
 *
 * <p>Each is kept next to the wheel layers ({@code <key>.tar} and {@code <key>.layer}, collected
 * with them by {@link WheelLayers#collect}), keyed by the wheel's sha256, the layout and the
 * compression (what the wheel layer's digest depends on), the source-size threshold and the Python
 * that compiled it; a wheel that gets none (too few sources) has a {@code <key>.layer} that says
 * so, so {@link #cached} tells every wheel's state without reading a wheel. The layer sits right
 * above its wheel layer in an image; why not inside it: the sandbox that compiles has the wheel
 * layers extracted already, and the UDF's sandbox then reuses them and only extracts the small
 * byte-code layers, where a wheel layer with byte code inside would be written and extracted a
 * second time.
 *
 * <p>The layer also holds the same byte code as one {@link ModuleBundle}, which runners read in one
 * go instead of file by file.
 */
final class PycLayers {
  private static final Logger log = LoggerFactory.getLogger(PycLayers.class);

  /** Part of every byte-code layer's key: change it whenever such a layer's content changes. */
  static final String FORMAT = "kiln-pyc-layer 2";

  /**
   * Wheels with fewer bytes of sources get no byte code: a runner compiles 128 KiB in about 20 ms
   * under gVisor, where compiling them here costs a sandbox, about 0.7 s (six, humanize, tabulate).
   */
  static final long MIN_SOURCE_BYTES = 128 << 10;

  /**
   * Run by the base's python3 with the directories and files to compile as arguments. Prints the
   * interpreter's cache tag on the first line, then {@code <source path> TAB <sha256 of the pyc>
   * TAB <base64 pyc>} per compiled file (files that do not compile are skipped, as compileall
   * does), then {@code done <files>}. Python uses an unchecked-hash pyc without looking at the
   * source, so every file is checked against its hash on arrival.
   *
   * <p>It writes with {@code os.write} until every byte is out, never through {@code sys.stdout}:
   * with the runner's {@code PYTHONUNBUFFERED=1}, {@code sys.stdout} is a text layer straight over
   * the raw file, which ignores a short write, and gVisor's stdout pipe returns short writes when
   * it is full (the host reads slower than the compile writes): the rest of that line was lost.
   */
  static final String SCRIPT =
      """
      import base64, hashlib, importlib.util, marshal, os, sys
      magic = importlib.util.MAGIC_NUMBER
      def write(text):
          data = memoryview(text.encode('utf-8'))
          while data:
              data = data[os.write(1, data):]
      write(sys.implementation.cache_tag + '\\n')
      done = 0
      def one(src):
          global done
          with open(src, 'rb') as f:
              data = f.read()
          try:
              code = compile(data, src, 'exec', dont_inherit=True)
          except Exception:
              return
          flags = (1).to_bytes(4, 'little')  # hash-based, unchecked (PEP 552)
          pyc = magic + flags + importlib.util.source_hash(data) + marshal.dumps(code)
          sha = hashlib.sha256(pyc).hexdigest()
          write(src + '\\t' + sha + '\\t' + base64.b64encode(pyc).decode('ascii') + '\\n')
          done += 1
      for root in sys.argv[1:]:
          if os.path.isfile(root):
              if root.endswith('.py'):
                  one(root)
              continue
          for d, dirs, files in os.walk(root):
              dirs[:] = sorted(x for x in dirs if x not in ('tests', '__pycache__'))
              for f in sorted(files):
                  if f.endswith('.py'):
                      one(os.path.join(d, f))
      write('done %d\\n' % done)
      """;

  /** Runs {@link #SCRIPT} with the base's Python over an image of these wheel layers. */
  interface Compiler {
    /** What the script printed, run with {@code argv} after it, over {@code wheelLayers}. */
    String compile(List<LayerSpec> wheelLayers, List<String> argv)
        throws KilnException, IOException, InterruptedException;
  }

  /**
   * A wheel's byte code as the cache knows it: its layer, none to ship ({@code layer} null, {@code
   * known}), or not compiled yet (neither); {@code key} names it in the cache.
   */
  record Cached(String key, LayerBlob layer, boolean known) {}

  /** The first line of a byte-code layer's info file that says its wheel gets none. */
  private static final String NONE_MARK = FORMAT + " none";

  private final WheelLayers wheels;
  private final long minSourceBytes;

  PycLayers(WheelLayers wheels) {
    this(wheels, MIN_SOURCE_BYTES);
  }

  /** minSourceBytes: wheels with fewer bytes of Python sources get no byte code. */
  PycLayers(WheelLayers wheels, long minSourceBytes) {
    this.wheels = wheels;
    this.minSourceBytes = minSourceBytes;
  }

  /**
   * What the cache holds for each wheel, in the same order, without compiling or reading a wheel (a
   * small file per wheel); marks what it finds as used, for collection.
   */
  List<Cached> cached(List<FetchInputs.Fetched> wheelFiles, TargetEnvironment python) {
    List<Cached> out = new ArrayList<>();
    for (FetchInputs.Fetched wheel : wheelFiles) {
      out.add(find(key(wheel, python)));
    }
    return out;
  }

  /**
   * Compiles the byte code of the wheels the cache knows nothing of, in up to {@code sandboxes}
   * runs of {@code compiler} (the wheels split between them by their sources' bytes), and keeps it:
   * a layer per wheel with byte code, a note for each that gets none.
   *
   * @param wheelLayers the wheels' layers, in the order of {@code wheelFiles}
   */
  void compile(
      List<FetchInputs.Fetched> wheelFiles,
      List<LayerSpec> wheelLayers,
      TargetEnvironment python,
      Compiler compiler,
      int sandboxes)
      throws KilnException, IOException, InterruptedException {
    List<Integer> missing = new ArrayList<>();
    List<Cached> cached = cached(wheelFiles, python);
    for (int i = 0; i < cached.size(); i++) {
      if (!cached.get(i).known()) {
        missing.add(i);
      }
    }
    if (missing.isEmpty()) {
      return;
    }
    long t0 = System.nanoTime();
    // Which wheel installs each source file; the wheels split into groups balanced by their
    // sources' bytes, each group compiled in its own sandbox (a compile gets one core).
    Map<String, Integer> owner = new HashMap<>();
    Map<Integer, Long> bytes = new HashMap<>();
    for (int i : missing) {
      bytes.put(i, 0L);
      for (Map.Entry<String, Long> source : sources(wheelLayers.get(i).blob(), python).entrySet()) {
        owner.put(source.getKey(), i);
        bytes.merge(i, source.getValue(), Long::sum);
      }
    }
    for (int i : missing) {
      if (bytes.get(i) < minSourceBytes) {
        markNone(key(wheelFiles.get(i), python));
      }
    }
    bytes.values().removeIf(b -> b < minSourceBytes);
    owner.values().removeIf(i -> !bytes.containsKey(i));
    if (bytes.isEmpty()) {
      return;
    }
    List<Integer> bySize = new ArrayList<>(bytes.keySet());
    bySize.sort((a, b) -> Long.compare(bytes.get(b), bytes.get(a)));
    int n = Math.min(bySize.size(), Math.max(1, sandboxes));
    List<List<Integer>> groups = new ArrayList<>();
    long[] load = new long[n];
    for (int g = 0; g < n; g++) {
      groups.add(new ArrayList<>());
    }
    for (int i : bySize) {
      int least = 0;
      for (int g = 1; g < n; g++) {
        least = load[g] < load[least] ? g : least;
      }
      groups.get(least).add(i);
      load[least] += bytes.get(i);
    }
    Map<Integer, TreeMap<String, byte[]>> compiled = new HashMap<>();
    List<String> tags = new ArrayList<>();
    try (ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor()) {
      List<Future<Map<Integer, TreeMap<String, byte[]>>>> runs = new ArrayList<>();
      for (List<Integer> group : groups) {
        TreeSet<String> roots = new TreeSet<>();
        owner.forEach((source, i) -> roots.add(group.contains(i) ? root(source, python) : ""));
        roots.remove("");
        List<String> argv = new ArrayList<>(List.of("python3", "-c", SCRIPT));
        argv.addAll(roots);
        List<LayerSpec> layers = group.stream().sorted().map(wheelLayers::get).toList();
        runs.add(threads.submit(() -> compileGroup(compiler, layers, argv, owner, tags)));
      }
      for (var run : runs) {
        compiled.putAll(run.get());
      }
    } catch (ExecutionException e) {
      switch (e.getCause()) {
        case KilnException k -> throw k;
        case IOException io -> throw io;
        case InterruptedException ie -> throw ie;
        default -> throw new IOException("compiling byte code failed: " + e.getCause(), e);
      }
    }
    if (tags.stream().distinct().count() > 1) {
      throw new IOException("the base's python3 gave different cache tags: " + tags);
    }
    String tag = tags.isEmpty() ? "" : tags.get(0);
    int files = 0;
    for (int i : bytes.keySet()) {
      TreeMap<String, byte[]> pyc = compiled.get(i);
      if (pyc == null || pyc.isEmpty()) {
        markNone(key(wheelFiles.get(i), python)); // no sources that compile: no layer
        continue;
      }
      files += pyc.size();
      store(key(wheelFiles.get(i), python), pyc, tag);
    }
    log.info(
        "compiled {} files of {} wheels to byte code in {} ms ({} sandboxes)",
        files,
        bytes.size(),
        (System.nanoTime() - t0) / 1_000_000,
        groups.size());
  }

  /**
   * Compiles one group's sources, once more when what arrived does not match its hashes (seen once
   * in a few runs on a loaded machine: a sandbox's stdout lost bytes). Returns the byte code by
   * wheel and source path, and adds the cache tag to {@code tags}.
   */
  private static Map<Integer, TreeMap<String, byte[]>> compileGroup(
      Compiler compiler,
      List<LayerSpec> layers,
      List<String> argv,
      Map<String, Integer> owner,
      List<String> tags)
      throws KilnException, IOException, InterruptedException {
    for (int attempt = 1; ; attempt++) {
      String output = compiler.compile(layers, argv);
      try {
        Map<Integer, TreeMap<String, byte[]>> compiled = new HashMap<>();
        int newline = output.indexOf('\n');
        String tag = newline < 0 ? "" : output.substring(0, newline).strip();
        if (!tag.matches("[A-Za-z0-9_.-]+")) {
          throw new IOException("the base's python3 printed no cache tag before its byte code");
        }
        int files = 0;
        boolean done = false;
        for (String line : output.substring(newline + 1).split("\n")) {
          if (!done && line.equals("done " + files)) {
            done = true;
            continue;
          }
          files++;
          String[] fields = line.split("\t", -1);
          Integer wheel = fields.length == 3 && !done ? owner.get(fields[0]) : null;
          if (wheel == null) {
            throw new IOException("the base's python3 printed an unexpected line");
          }
          byte[] pyc = decode(fields[2]);
          String sha = HexFormat.of().formatHex(WheelRecord.digest("sha256").digest(pyc));
          if (!sha.equals(fields[1])) {
            throw new IOException("the byte code of " + fields[0] + " does not match its hash");
          }
          compiled.computeIfAbsent(wheel, k -> new TreeMap<>()).put(fields[0], pyc);
        }
        if (!done) {
          throw new IOException("the byte code ended early");
        }
        synchronized (tags) {
          tags.add(tag);
        }
        return compiled;
      } catch (IOException e) {
        if (attempt == 2) {
          throw new IOException("the byte code arrived damaged twice: " + e.getMessage(), e);
        }
        log.warn("the byte code arrived damaged ({}); compiling it again", e.getMessage());
      }
    }
  }

  private static byte[] decode(String base64) throws IOException {
    try {
      return Base64.getDecoder().decode(base64);
    } catch (IllegalArgumentException e) {
      throw new IOException("a file's byte code is not base64", e);
    }
  }

  /** The name of a wheel layer's byte-code layer. */
  static String name(LayerSpec wheel) {
    return wheel.name().replaceFirst("^wheel ", "byte code ");
  }

  /**
   * The layer's key: the wheel, the layout and the compression (what its wheel layer's digest
   * depends on), the threshold and the Python (and this layer's format and compression).
   */
  private String key(FetchInputs.Fetched wheel, TargetEnvironment python) {
    String canonical =
        String.join(
            "\n",
            FORMAT,
            wheel.digest().toString(),
            WheelLayers.layoutHash(InstallLayout.of(python), wheels.gzipLevel()),
            python.implementation(),
            python.pythonVersion(),
            python.soabi(),
            "min " + minSourceBytes,
            compression());
    byte[] digest = WheelRecord.digest("sha256").digest(canonical.getBytes(StandardCharsets.UTF_8));
    return "pyc-" + HexFormat.of().formatHex(digest, 0, 16);
  }

  private String compression() {
    int level = wheels.gzipLevel();
    return level == ImageBuilder.UNCOMPRESSED ? "tar" : "gzip " + level;
  }

  private Cached find(String key) {
    Path info = wheels.workDir().resolve(key + ".layer");
    if (!Files.isRegularFile(info)) {
      return new Cached(key, null, false);
    }
    try {
      Cached found = new Cached(key, null, false);
      if (Files.readString(info, StandardCharsets.UTF_8).strip().equals(NONE_MARK)) {
        found = new Cached(key, null, true);
      } else {
        for (String ext : List.of(".tar", ".tar.gz")) {
          Path file = wheels.workDir().resolve(key + ext);
          if (Files.isRegularFile(file)) {
            found = new Cached(key, WheelLayers.read(info, file), true);
          }
        }
      }
      if (found.known()) {
        Files.setLastModifiedTime(info, FileTime.from(Instant.now())); // used, for collection
      }
      return found;
    } catch (IOException e) {
      log.warn("byte-code layer {} is unusable ({}); compiling it again", info, e.toString());
      return new Cached(key, null, false);
    }
  }

  /** Notes that the wheel with this key gets no byte code (collected like a layer). */
  private void markNone(String key) throws IOException {
    Path dir = Files.createDirectories(wheels.workDir());
    Path temp = dir.resolve(".tmp-" + key + "-" + UUID.randomUUID() + ".layer");
    try {
      Files.writeString(temp, NONE_MARK + "\n", StandardCharsets.UTF_8);
      move(temp, dir.resolve(key + ".layer"));
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  /** The {@code .py} files under site-packages that a wheel layer installs, and their sizes. */
  private static Map<String, Long> sources(LayerBlob wheelLayer, TargetEnvironment python)
      throws IOException {
    Map<String, Long> out = new HashMap<>();
    InputStream file = Files.newInputStream(wheelLayer.file());
    try (InputStream in =
            wheelLayer.mediaType().equals(LayerBlob.TAR_GZIP)
                ? new GZIPInputStream(file, 1 << 16)
                : file;
        TarArchiveInputStream tar = new TarArchiveInputStream(in)) {
      for (TarArchiveEntry e = tar.getNextEntry(); e != null; e = tar.getNextEntry()) {
        String path = "/" + e.getName();
        if (e.isFile() && path.endsWith(".py") && root(path, python) != null) {
          out.put(path, e.getSize());
        }
      }
    }
    return out;
  }

  /** The top-level entry of site-packages that holds {@code path}, or null when outside it. */
  private static String root(String path, TargetEnvironment python) {
    for (String site : List.of(python.purelib(), python.platlib())) {
      String prefix = site.endsWith("/") ? site : site + "/";
      if (path.startsWith(prefix)) {
        int slash = path.indexOf('/', prefix.length());
        return slash < 0 ? path : path.substring(0, slash);
      }
    }
    return null;
  }

  /** Writes the byte-code layer (sorted, every parent directory listed) and the file for it. */
  private LayerBlob store(String key, TreeMap<String, byte[]> pyc, String tag) throws IOException {
    TreeMap<String, byte[]> entries = new TreeMap<>();
    ModuleBundle modules = new ModuleBundle();
    for (Map.Entry<String, byte[]> e : pyc.entrySet()) {
      String source = e.getKey();
      modules.add(ModuleBundle.BYTECODE, source, e.getValue());
      int slash = source.lastIndexOf('/');
      String module = source.substring(slash + 1, source.length() - ".py".length());
      String target = source.substring(1, slash + 1) + "__pycache__/" + module + "." + tag + ".pyc";
      entries.put(target, e.getValue());
      for (int s = target.indexOf('/'); s > 0; s = target.indexOf('/', s + 1)) {
        entries.putIfAbsent(target.substring(0, s + 1), null);
      }
    }
    if (!modules.isEmpty()) {
      String bundle = ModuleBundle.target(key, ModuleBundle.BYTECODE);
      entries.put(bundle, modules.toBytes());
      for (int s = bundle.indexOf('/'); s > 0; s = bundle.indexOf('/', s + 1)) {
        entries.putIfAbsent(bundle.substring(0, s + 1), null);
      }
    }
    int level = wheels.gzipLevel();
    boolean plain = level == ImageBuilder.UNCOMPRESSED;
    Path dir = wheels.workDir();
    Files.createDirectories(dir);
    String temp = ".tmp-" + key + "-" + UUID.randomUUID();
    Path tempFile = dir.resolve(temp + ".tar");
    Path tempInfo = dir.resolve(temp + ".layer");
    Path file = dir.resolve(key + (plain ? ".tar" : ".tar.gz"));
    try {
      MessageDigest compressed = WheelRecord.digest("sha256");
      MessageDigest uncompressed = WheelRecord.digest("sha256");
      try (OutputStream out =
              new DigestOutputStream(
                  new BufferedOutputStream(Files.newOutputStream(tempFile), 1 << 16), compressed);
          OutputStream gzip = plain ? out : new Gzip(out, level);
          TarArchiveOutputStream tar =
              new TarArchiveOutputStream(
                  plain ? gzip : new DigestOutputStream(gzip, uncompressed))) {
        tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
        tar.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
        for (Map.Entry<String, byte[]> e : entries.entrySet()) {
          byte[] bytes = e.getValue();
          tar.putArchiveEntry(
              bytes == null
                  ? TarEntries.header(e.getKey(), -1, 0)
                  : TarEntries.header(e.getKey(), 0644, bytes.length));
          if (bytes != null) {
            tar.write(bytes);
          }
          tar.closeArchiveEntry();
        }
        tar.finish();
      }
      Digest digest = Digest.fromSha(compressed);
      LayerBlob blob =
          new LayerBlob(
              file,
              digest,
              plain ? digest : Digest.fromSha(uncompressed),
              Files.size(tempFile),
              plain ? LayerBlob.TAR : LayerBlob.TAR_GZIP);
      WheelLayers.write(tempInfo, blob);
      // The blob first, then the file that vouches for it, as for wheel layers.
      move(tempFile, file);
      move(tempInfo, dir.resolve(key + ".layer"));
      return blob;
    } finally {
      Files.deleteIfExists(tempFile);
      Files.deleteIfExists(tempInfo);
    }
  }

  private static void move(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      throw new IOException("cannot rename " + from + " to " + to + " atomically", e);
    }
  }
}
