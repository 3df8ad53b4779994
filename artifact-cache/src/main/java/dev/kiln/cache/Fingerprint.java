package dev.kiln.cache;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * What a file looked like when its bytes were last hashed: size, inode, modification time and
 * status-change time. Any write through the file system changes the ctime (which no user call can
 * set back), so an unchanged fingerprint means unchanged bytes, barring failures below the file
 * system; a changed one means the file must be hashed again before it is trusted.
 */
record Fingerprint(long size, long inode, long mtimeNanos, long ctimeNanos) {
  static final int BYTES = 32;

  /** Whether the unix attribute view (inode, ctime) exists here; checked once. */
  private static volatile Boolean unixView;

  static Fingerprint of(Path file) throws IOException {
    if (unixView == null || unixView) {
      try {
        Map<String, Object> a = Files.readAttributes(file, "unix:size,ino,lastModifiedTime,ctime");
        unixView = true;
        return new Fingerprint(
            (Long) a.get("size"),
            (Long) a.get("ino"),
            nanos((FileTime) a.get("lastModifiedTime")),
            nanos((FileTime) a.get("ctime")));
      } catch (UnsupportedOperationException | IllegalArgumentException e) {
        unixView = false;
      }
    }
    BasicFileAttributes a = Files.readAttributes(file, BasicFileAttributes.class);
    Object key = a.fileKey();
    return new Fingerprint(
        a.size(),
        key == null ? 0 : key.hashCode(),
        nanos(a.lastModifiedTime()),
        nanos(a.creationTime()));
  }

  private static long nanos(FileTime t) {
    return t.to(TimeUnit.NANOSECONDS);
  }

  void writeTo(ByteBuffer b) {
    b.putLong(size).putLong(inode).putLong(mtimeNanos).putLong(ctimeNanos);
  }

  static Fingerprint readFrom(ByteBuffer b) {
    return new Fingerprint(b.getLong(), b.getLong(), b.getLong(), b.getLong());
  }
}
