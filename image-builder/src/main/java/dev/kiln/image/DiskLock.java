package dev.kiln.image;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Keeps garbage collection away from builds: a build (and a lookup that hands an image out) holds
 * the read lock while it uses the image builder's files; collecting takes the write lock, so it
 * never deletes a blob, a cached layer or a wheel layer that a build is about to use. One lock per
 * process: every builder of a data directory shares it, and one Kiln process owns a data directory.
 */
final class DiskLock {
  static final ReentrantReadWriteLock LOCK = new ReentrantReadWriteLock();

  private DiskLock() {}
}
