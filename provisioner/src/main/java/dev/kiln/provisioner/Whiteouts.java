package dev.kiln.provisioner;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns the OCI whiteout files of an extracted layer into the markers overlayfs reads: {@code
 * .wh.name} becomes a 0/0 character device {@code name}, {@code .wh..wh..opq} becomes the {@code
 * trusted.overlay.opaque=y} attribute on its directory.
 *
 * <p>Java can neither make device nodes nor set {@code trusted.*} attributes, so the markers are
 * written as a small tar archive that GNU tar extracts over the layer: one process for all of them.
 */
final class Whiteouts {
  static final String PREFIX = ".wh.";
  static final String OPAQUE = ".wh..wh..opq";
  static final String OPAQUE_XATTR = "trusted.overlay.opaque";

  private Whiteouts() {}

  /** What a layer's whiteout files asked for, as paths relative to the layer directory. */
  record Markers(List<String> deleted, List<String> opaqueDirs) {
    boolean isEmpty() {
      return deleted.isEmpty() && opaqueDirs.isEmpty();
    }
  }

  /**
   * Converts the whiteouts under {@code layerDir} in place, using {@code tar} to write the markers.
   * Returns what was converted.
   */
  static Markers convert(Path layerDir, String tar) throws IOException {
    Markers markers = collect(layerDir);
    if (markers.isEmpty()) {
      return markers;
    }
    byte[] archive = markerArchive(layerDir, markers);
    HostCommand r =
        HostCommand.run(
            List.of(
                tar,
                "-x",
                "-f",
                "-",
                "-C",
                layerDir.toString(),
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=" + OPAQUE_XATTR),
            null,
            archive,
            Duration.ofMinutes(2));
    if (!r.ok()) {
      throw new IOException(
          "writing overlay whiteout markers into " + layerDir + " failed: " + r.diagnostics());
    }
    return markers;
  }

  /** Finds whiteout files and removes them, remembering what they stood for. */
  static Markers collect(Path layerDir) throws IOException {
    List<String> deleted = new ArrayList<>();
    List<String> opaque = new ArrayList<>();
    Files.walkFileTree(
        layerDir,
        new SimpleFileVisitor<>() {
          @Override
          public FileVisitResult visitFile(Path file, BasicFileAttributes attrs)
              throws IOException {
            String name = file.getFileName().toString();
            if (!name.startsWith(PREFIX)) {
              return FileVisitResult.CONTINUE;
            }
            Path dir = file.getParent();
            Files.delete(file);
            if (name.equals(OPAQUE)) {
              opaque.add(relative(layerDir, dir));
            } else if (!name.startsWith(PREFIX + PREFIX)) {
              // A whiteout only hides lower layers; a file of the same name in this layer wins.
              Path target = dir.resolve(name.substring(PREFIX.length()));
              if (!Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
                deleted.add(relative(layerDir, target));
              }
            }
            return FileVisitResult.CONTINUE;
          }
        });
    return new Markers(List.copyOf(deleted), List.copyOf(opaque));
  }

  private static String relative(Path root, Path p) {
    String rel = root.relativize(p).toString();
    return rel.isEmpty() ? "." : rel;
  }

  /** A tar with a 0/0 character device per deleted path and a re-stated opaque directory. */
  static byte[] markerArchive(Path layerDir, Markers markers) throws IOException {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    for (String path : markers.deleted()) {
      writeEntry(out, path, '3', 0, 0, 0, 0, Map.of());
    }
    for (String path : markers.opaqueDirs()) {
      // Re-state the directory's own metadata so extracting the entry changes nothing but the
      // xattr.
      Map<String, Object> a =
          Files.readAttributes(
              layerDir.resolve(path),
              "unix:mode,uid,gid,lastModifiedTime",
              LinkOption.NOFOLLOW_LINKS);
      writeEntry(
          out,
          path,
          '5',
          (Integer) a.get("mode") & 07777,
          (Integer) a.get("uid"),
          (Integer) a.get("gid"),
          ((FileTime) a.get("lastModifiedTime")).toMillis() / 1000,
          Map.of("SCHILY.xattr." + OPAQUE_XATTR, "y"));
    }
    out.write(new byte[1024]);
    return out.toByteArray();
  }

  /**
   * Writes one ustar entry without content, preceded by a PAX header that carries the full path,
   * owner and time (ustar fields are too narrow for long paths) plus {@code extra} records.
   */
  static void writeEntry(
      ByteArrayOutputStream out,
      String path,
      char type,
      int mode,
      long uid,
      long gid,
      long mtime,
      Map<String, String> extra)
      throws IOException {
    Map<String, String> records = new LinkedHashMap<>();
    records.put("path", path);
    records.put("uid", Long.toString(uid));
    records.put("gid", Long.toString(gid));
    records.put("mtime", Long.toString(mtime));
    records.putAll(extra);
    ByteArrayOutputStream pax = new ByteArrayOutputStream();
    for (var e : records.entrySet()) {
      pax.write(paxRecord(e.getKey(), e.getValue()));
    }
    byte[] paxData = pax.toByteArray();
    out.write(header("PaxHeader", 'x', 0644, 0, 0, 0, paxData.length));
    out.write(paxData);
    out.write(new byte[(512 - paxData.length % 512) % 512]);
    out.write(header(path, type, mode, uid, gid, mtime, 0));
  }

  /** {@code "<length> key=value\n"} where the length counts the whole record, itself included. */
  static byte[] paxRecord(String key, String value) {
    int body = (" " + key + "=" + value + "\n").getBytes(StandardCharsets.UTF_8).length;
    int len = body + 1;
    while (Integer.toString(len).length() + body != len) {
      len = Integer.toString(len).length() + body;
    }
    return (len + " " + key + "=" + value + "\n").getBytes(StandardCharsets.UTF_8);
  }

  private static byte[] header(
      String name, char type, int mode, long uid, long gid, long mtime, long size) {
    byte[] h = new byte[512];
    byte[] n = name.getBytes(StandardCharsets.UTF_8);
    System.arraycopy(n, 0, h, 0, Math.min(n.length, 100));
    octal(h, 100, 8, mode);
    octal(h, 108, 8, clamp(uid, 07777777));
    octal(h, 116, 8, clamp(gid, 07777777));
    octal(h, 124, 12, size);
    octal(h, 136, 12, clamp(mtime, 077777777777L));
    h[156] = (byte) type;
    byte[] magic = "ustar\u000000".getBytes(StandardCharsets.US_ASCII);
    System.arraycopy(magic, 0, h, 257, magic.length);
    octal(h, 329, 8, 0);
    octal(h, 337, 8, 0);
    for (int i = 148; i < 156; i++) {
      h[i] = ' ';
    }
    long sum = 0;
    for (byte b : h) {
      sum += b & 0xff;
    }
    octal(h, 148, 7, sum);
    return h;
  }

  private static long clamp(long v, long max) {
    return Math.max(0, Math.min(v, max));
  }

  /** Zero-padded octal digits filling {@code width - 1} bytes, then NUL. */
  private static void octal(byte[] h, int offset, int width, long value) {
    String s = Long.toOctalString(value);
    String padded = "0".repeat(Math.max(0, width - 1 - s.length())) + s;
    byte[] b = padded.getBytes(StandardCharsets.US_ASCII);
    System.arraycopy(b, 0, h, offset, width - 1);
    h[offset + width - 1] = 0;
  }
}
