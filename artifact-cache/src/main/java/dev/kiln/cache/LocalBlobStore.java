package dev.kiln.cache;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.Optional;
import java.util.UUID;

/**
 * Blobs as files under {@code <root>/sha256/<hex>}, the same shape as an OCI image layout's {@code
 * blobs/} directory, so an image layout can use this store directly.
 *
 * <p>Every write goes to a temporary file in {@code <root>/tmp} on the same file system, is hashed
 * while it is written, and is then moved into place atomically: a reader sees the whole blob or
 * none of it, and a process killed mid-write leaves only a temporary file that {@link #cleanTemp}
 * removes.
 */
public final class LocalBlobStore implements BlobStore {
  private final Path root;
  private final Path blobs;
  private final Path tmp;

  /** A store with its temporary files in {@code <root>/tmp}. */
  public LocalBlobStore(Path root) throws IOException {
    this(root, root.resolve("tmp"));
  }

  /**
   * A store with its temporary files in {@code tmp}, which must be on the same file system as
   * {@code root} (so the final move is atomic) and must not be shared with anything else.
   */
  public LocalBlobStore(Path root, Path tmp) throws IOException {
    this.root = root;
    this.blobs = root.resolve("sha256");
    this.tmp = tmp;
    Files.createDirectories(blobs);
    Files.createDirectories(tmp);
  }

  public Path root() {
    return root;
  }

  /** Where the blob lives (or would live) on disk. */
  public Path path(Digest digest) {
    return blobs.resolve(digest.hex());
  }

  @Override
  public boolean contains(Digest digest) {
    return Files.isRegularFile(path(digest));
  }

  @Override
  public Optional<Path> file(Digest digest) {
    Path p = path(digest);
    return Files.isRegularFile(p) ? Optional.of(p) : Optional.empty();
  }

  @Override
  public Digest put(InputStream content) throws IOException {
    return write(null, content);
  }

  @Override
  public void put(Digest expected, InputStream content) throws IOException {
    write(expected, content);
  }

  /** Stores bytes already in memory. */
  public Digest put(byte[] content) throws IOException {
    Digest d = Digest.of(content);
    if (!contains(d)) {
      write(d, new java.io.ByteArrayInputStream(content));
    }
    return d;
  }

  /**
   * Stores {@code file}, which the caller wrote and knows to hold {@code expected}, as a hard link
   * instead of a copy: no second write of its bytes. Only its size is checked. Returns false when
   * it cannot be linked here (another file system, or not the size expected): then {@link #put} it,
   * which checks its hash.
   */
  public boolean link(Digest expected, Path file, long size) throws IOException {
    if (contains(expected)) {
      return true;
    }
    if (Files.size(file) != size) {
      return false;
    }
    Path temp = tmp.resolve(UUID.randomUUID() + ".part");
    try {
      Files.createLink(temp, file);
    } catch (IOException | UnsupportedOperationException e) {
      return false;
    }
    try {
      move(temp, path(expected));
      return true;
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  private Digest write(Digest expected, InputStream content) throws IOException {
    Path temp = tmp.resolve(UUID.randomUUID() + ".part");
    MessageDigest sha = Digest.newSha256();
    try {
      try (OutputStream out = new DigestOutputStream(Files.newOutputStream(temp), sha)) {
        content.transferTo(out);
      }
      Digest actual = Digest.fromSha(sha);
      if (expected != null && !expected.equals(actual)) {
        throw new CorruptBlobException(expected, actual, "a write");
      }
      Path target = path(actual);
      if (!Files.exists(target)) {
        move(temp, target);
      }
      return actual;
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  /** Attempts an atomic move first, and falls back to a copy if the file system cannot. */
  private static void move(Path from, Path to) throws IOException {
    try {
      Files.move(from, to, StandardCopyOption.ATOMIC_MOVE);
    } catch (FileAlreadyExistsException e) {
      // Another writer stored the same content first; theirs is identical.
    } catch (AtomicMoveNotSupportedException e) {
      Files.copy(from, to, StandardCopyOption.REPLACE_EXISTING);
    }
  }

  /** Removes temporary files left by writers that died; call when no writer is running. */
  public void cleanTemp() throws IOException {
    try (var files = Files.list(tmp)) {
      for (Path p : (Iterable<Path>) files::iterator) {
        Files.deleteIfExists(p);
      }
    }
  }
}
