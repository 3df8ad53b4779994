package dev.kiln.cache;

import java.io.FilterInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.MessageDigest;

/**
 * Hashes what passes through and, at the end of the stream, throws {@link CorruptBlobException}
 * when the bytes did not hash to the expected digest. The bytes before the end have already been
 * handed out, so callers must treat everything they read as untrusted until they have seen the end
 * without an exception (write to a temporary file, then move it into place).
 */
final class VerifyingInputStream extends FilterInputStream {
  /** Called once when the bytes turn out to be wrong, before the exception is thrown. */
  interface OnCorrupt {
    void corrupt(Digest actual) throws IOException;
  }

  private final Digest expected;
  private final String where;
  private final OnCorrupt onCorrupt;
  private final MessageDigest sha = Digest.newSha256();
  private long count;
  private boolean checked;

  VerifyingInputStream(InputStream in, Digest expected, String where, OnCorrupt onCorrupt) {
    super(in);
    this.expected = expected;
    this.where = where;
    this.onCorrupt = onCorrupt;
  }

  @Override
  public int read() throws IOException {
    int b = super.read();
    if (b < 0) {
      check();
    } else {
      sha.update((byte) b);
      count++;
    }
    return b;
  }

  @Override
  public int read(byte[] buf, int off, int len) throws IOException {
    int n = super.read(buf, off, len);
    if (n < 0) {
      check();
    } else {
      sha.update(buf, off, n);
      count += n;
    }
    return n;
  }

  @Override
  public long skip(long n) throws IOException {
    // Skipped bytes must be hashed too, so skip by reading.
    byte[] buf = new byte[(int) Math.min(n, 8192)];
    long left = n;
    while (left > 0) {
      int r = read(buf, 0, (int) Math.min(left, buf.length));
      if (r < 0) {
        break;
      }
      left -= r;
    }
    return n - left;
  }

  @Override
  public boolean markSupported() {
    return false;
  }

  /** Bytes read so far. */
  long count() {
    return count;
  }

  private void check() throws IOException {
    if (checked) {
      return;
    }
    checked = true;
    Digest actual = Digest.fromSha(sha);
    if (!actual.equals(expected)) {
      onCorrupt.corrupt(actual);
      throw new CorruptBlobException(expected, actual, where);
    }
  }
}
