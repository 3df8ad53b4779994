package dev.kiln.resolver;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * Hashing and atomic replacement for the resolver's on-disk caches (locks, metadata, kept wheels),
 * so that a reader never sees half a file and a file is known by its sha256.
 */
final class CacheFiles {
  private CacheFiles() {}

  /** Copies {@code in} to {@code out} and answers the sha256 (hex) of what went through. */
  static String copyHashing(InputStream in, OutputStream out) throws IOException {
    MessageDigest md = newSha256();
    byte[] buf = new byte[1 << 16];
    int n;
    while ((n = in.read(buf)) > 0) {
      md.update(buf, 0, n);
      out.write(buf, 0, n);
    }
    return HexFormat.of().formatHex(md.digest());
  }

  /** Moves {@code from} over {@code to}, atomically where the file system can. */
  static void moveAtomically(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      Files.move(from, to, StandardCopyOption.REPLACE_EXISTING);
    }
  }

  static String sha256(byte[] bytes) {
    return HexFormat.of().formatHex(newSha256().digest(bytes));
  }

  private static MessageDigest newSha256() {
    try {
      return MessageDigest.getInstance("SHA-256");
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every JDK has SHA-256", e);
    }
  }
}
