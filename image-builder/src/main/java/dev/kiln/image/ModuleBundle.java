package dev.kiln.image;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.TreeMap;

/**
 * One file per layer that holds the Python modules the layer installs under site-packages, so a
 * runner imports them without a file-system round trip per module. Under gVisor's ptrace platform
 * every system call costs about 140 µs here, and Python's path finder spends about eight on each
 * module it imports (stat, open, fstat, ioctl, lseek, read, read, close): numpy and pandas are
 * about 7,000 calls, a second of a runner's start. The runner ({@code kiln_modules.py}) maps every
 * bundle in {@link #DIR} once and serves the modules from memory; the files stay in the layer, as
 * {@code __file__}, tracebacks, {@code inspect} and package resources need them.
 *
 * <p>A wheel layer carries its {@code .py} sources ({@code <name>.src.kmb}); its byte-code layer
 * carries the same modules' byte code ({@code <name>.pyc.kmb}), which the runner prefers. {@code
 * tests} directories are left out, as byte code leaves them out: runners do not import them, and
 * pandas' are most of its sources. The format, little-endian:
 *
 * <pre>
 * bundle := "KILNMB1\n"  count:u32  entry × count  data
 * entry  := kind:u8  path_length:u16  path:utf8  offset:u64  length:u64
 * </pre>
 *
 * <p>{@code path} is the module's source file in the image ({@code .py}, also for byte code), or
 * for {@link #OTHER} a file Python's path finder may prefer over a source of the same name (an
 * extension module), which the runner then leaves to it; {@code offset} counts from the bundle's
 * start. Entries are sorted by path, so a bundle's bytes depend only on its content.
 */
final class ModuleBundle {
  /** Where bundles are in an image; {@code kiln_modules.py} reads every one there. */
  static final String DIR = "/kiln/modules";

  static final byte[] MAGIC = "KILNMB1\n".getBytes(StandardCharsets.US_ASCII);
  static final int SOURCE = 0;
  static final int BYTECODE = 1;
  static final int OTHER = 2;

  private record Entry(int kind, byte[] content) {}

  private final TreeMap<String, Entry> entries = new TreeMap<>();
  private long bytes;

  /** The bundle's path in the image, without the leading slash, for a layer called {@code name}. */
  static String target(String name, int kind) {
    String safe = name.replaceAll("[^A-Za-z0-9._-]", "_");
    return DIR.substring(1) + "/" + safe + (kind == BYTECODE ? ".pyc.kmb" : ".src.kmb");
  }

  /**
   * Whether a file at {@code path} (absolute) belongs in a bundle: under one of the site
   * directories and not in a {@code tests} directory or {@code __pycache__}.
   */
  static boolean bundled(String path, String... siteDirs) {
    for (String site : siteDirs) {
      String prefix = site.endsWith("/") ? site : site + "/";
      if (path.startsWith(prefix)) {
        return !path.contains("/tests/") && !path.contains("/__pycache__/");
      }
    }
    return false;
  }

  /** Whether Python's path finder takes a file named so for a module before its source. */
  static boolean isExtension(String path) {
    String name = path.substring(path.lastIndexOf('/') + 1);
    return name.endsWith(".so") || name.endsWith(".pyd");
  }

  /** Adds a module's source or byte code (at its source's absolute path), or an {@link #OTHER}. */
  void add(int kind, String path, byte[] content) {
    Entry previous = entries.put(path, new Entry(kind, content));
    bytes += content.length - (previous == null ? 0 : previous.content().length);
  }

  boolean isEmpty() {
    return entries.isEmpty();
  }

  /** The bundle's bytes. */
  byte[] toBytes() {
    int headerBytes = MAGIC.length + 4;
    for (String path : entries.keySet()) {
      headerBytes += 1 + 2 + path.getBytes(StandardCharsets.UTF_8).length + 16;
    }
    ByteBuffer out =
        ByteBuffer.allocate(Math.toIntExact(headerBytes + bytes)).order(ByteOrder.LITTLE_ENDIAN);
    out.put(MAGIC).putInt(entries.size());
    long offset = headerBytes;
    for (Map.Entry<String, Entry> e : entries.entrySet()) {
      byte[] path = e.getKey().getBytes(StandardCharsets.UTF_8);
      if (path.length > 0xffff) {
        throw new IllegalArgumentException("a module path of " + path.length + " bytes");
      }
      out.put((byte) e.getValue().kind()).putShort((short) path.length).put(path);
      out.putLong(offset).putLong(e.getValue().content().length);
      offset += e.getValue().content().length;
    }
    for (Entry e : entries.values()) {
      out.put(e.content());
    }
    return out.array();
  }
}
