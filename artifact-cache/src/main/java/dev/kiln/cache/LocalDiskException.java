package dev.kiln.cache;

import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.OutputStream;

/**
 * Writing to the local cache directory failed (disk full, permissions): a local problem, which must
 * not be blamed on the remote tier or the network, nor retried over it.
 */
final class LocalDiskException extends IOException {
  private static final long serialVersionUID = 1L;

  LocalDiskException(String message, Throwable cause) {
    super(message, cause);
  }

  /** An output stream whose failures are {@link LocalDiskException}s. */
  static OutputStream marking(OutputStream out, String where) {
    return new FilterOutputStream(out) {
      @Override
      public void write(byte[] b, int off, int len) throws IOException {
        try {
          out.write(b, off, len);
        } catch (IOException e) {
          throw new LocalDiskException(where + ": " + e.getMessage(), e);
        }
      }

      @Override
      public void close() throws IOException {
        try {
          out.close();
        } catch (IOException e) {
          throw new LocalDiskException(where + ": " + e.getMessage(), e);
        }
      }
    };
  }
}
