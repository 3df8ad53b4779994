package dev.kiln.cache;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Content-addressed blob storage: a blob is written once under its sha256 and read back verified.
 * Readers never see a partial blob.
 */
public interface BlobStore {

  /** True when the blob is present in this store. */
  boolean contains(Digest digest) throws IOException;

  /**
   * A local file holding the blob, when present. The file is complete and was verified when
   * written; callers must not modify it.
   */
  Optional<Path> file(Digest digest) throws IOException;

  /** Stores the stream's bytes and returns their digest; a blob already present is kept. */
  Digest put(InputStream content) throws IOException;

  /**
   * Stores the stream's bytes, which must hash to {@code expected}; throws {@link
   * CorruptBlobException} (and stores nothing) when they do not.
   */
  void put(Digest expected, InputStream content) throws IOException;
}
