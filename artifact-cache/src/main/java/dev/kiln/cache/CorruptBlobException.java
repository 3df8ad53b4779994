package dev.kiln.cache;

import java.io.IOException;

/** Bytes did not hash to the digest they were stored or fetched under. */
public final class CorruptBlobException extends IOException {
  private static final long serialVersionUID = 1L;

  public CorruptBlobException(Digest expected, Digest actual, String where) {
    super("blob " + expected + " from " + where + " hashes to " + actual + "; it was discarded");
  }
}
