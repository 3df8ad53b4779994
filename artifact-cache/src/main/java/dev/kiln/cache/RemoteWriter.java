package dev.kiln.cache;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Iterator;
import java.util.LinkedHashSet;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Writes blobs to the remote tier in the background, so a put returns as soon as the blob is on
 * local disk.
 *
 * <p>The queue is durable: each entry is in the index ({@link CacheIndex#enqueueUpload}) before
 * {@link #enqueue} returns, and a restarted cache resumes it. One worker thread uploads in FIFO
 * order (of this run; entries recovered at open come first). When a remote call fails the remote
 * tier is marked down ({@link RemoteHealth}); the worker then waits out a backoff that doubles up
 * to {@link Tuning#remoteBackoffMax} and tries again — an upload, or a probe of the bucket when
 * nothing is queued — and the first success marks the tier up for reads again. Queued blobs are
 * pinned in the local tier — their local file is the only copy — so eviction skips them. A blob
 * already in the bucket (another node uploaded it) costs one HEAD request.
 */
final class RemoteWriter implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RemoteWriter.class);

  private final CacheIndex index;
  private final LocalTier local;
  private final S3Tier remote;
  private final RemoteHealth health;
  private final ReentrantLock lock = new ReentrantLock();
  private final Condition changed = lock.newCondition();
  private final LinkedHashSet<Digest> queue = new LinkedHashSet<>();
  private final Thread worker;
  private volatile boolean closed;

  RemoteWriter(CacheIndex index, LocalTier local, S3Tier remote, RemoteHealth health) {
    this.index = index;
    this.local = local;
    this.remote = remote;
    this.health = health;
    queue.addAll(index.uploads());
    health.onChange(this::wake);
    worker = Thread.ofPlatform().daemon().name("kiln-cache-remote-writer").start(this::run);
  }

  /** Queues the blob for upload; durable once this returns. */
  void enqueue(Digest d) throws IOException {
    lock.lock();
    try {
      if (!queue.add(d)) {
        return;
      }
      index.enqueueUpload(d, System.currentTimeMillis());
      changed.signalAll();
    } catch (IOException e) {
      queue.remove(d);
      throw e;
    } finally {
      lock.unlock();
    }
  }

  boolean isQueued(Digest d) {
    lock.lock();
    try {
      return queue.contains(d);
    } finally {
      lock.unlock();
    }
  }

  long depth() {
    lock.lock();
    try {
      return queue.size();
    } finally {
      lock.unlock();
    }
  }

  /** Waits until the queue is empty; false when the timeout passed first. */
  boolean awaitEmpty(Duration timeout) throws InterruptedException {
    long left = timeout.toNanos();
    lock.lock();
    try {
      while (!queue.isEmpty()) {
        if (left <= 0) {
          return false;
        }
        left = changed.awaitNanos(left);
      }
      return true;
    } finally {
      lock.unlock();
    }
  }

  private void wake() {
    lock.lock();
    try {
      changed.signalAll();
    } finally {
      lock.unlock();
    }
  }

  private void run() {
    while (!closed) {
      Digest next;
      lock.lock();
      try {
        long wait = health.nanosUntilRetry();
        if (wait > 0) {
          changed.awaitNanos(wait);
          continue;
        }
        if (queue.isEmpty()) {
          if (!health.down()) {
            changed.await();
            continue;
          }
          next = null; // nothing to upload, but reads wait for someone to find S3 back
        } else {
          Iterator<Digest> it = queue.iterator();
          next = it.next();
        }
      } catch (InterruptedException e) {
        return; // closing
      } finally {
        lock.unlock();
      }
      if (next == null) {
        probe();
        continue;
      }
      boolean done = upload(next);
      lock.lock();
      try {
        if (done) {
          queue.remove(next);
          index.removeUpload(next);
        }
        changed.signalAll();
      } catch (IOException e) {
        log.warn("could not remove {} from the remote write queue: {}", next, e.getMessage());
      } finally {
        lock.unlock();
      }
    }
  }

  /** Asks the remote tier whether it is back. */
  private void probe() {
    try {
      remote.probe();
      log.info("remote cache tier is reachable again");
      health.succeeded();
    } catch (IOException e) {
      if (!closed) {
        log.debug("remote cache tier still down: {}", e.getMessage());
        health.failed();
      }
    }
  }

  /** One attempt; true when the blob is in the bucket (or can never get there) afterwards. */
  private boolean upload(Digest d) {
    Optional<Path> file;
    try {
      file = local.file(d);
    } catch (IOException e) {
      log.warn("remote write of {} skipped: cannot read it locally: {}", d, e.getMessage());
      return true;
    }
    if (file.isEmpty()) {
      log.warn(
          "remote write of {} dropped: the local copy is gone or was corrupt; the blob will be"
              + " fetched from its origin again when needed",
          d);
      return true;
    }
    try {
      if (!remote.contains(d)) {
        remote.upload(d, file.get());
      }
      health.succeeded();
      return true;
    } catch (IOException e) {
      if (closed) {
        return false; // interrupted by close(); the entry stays queued for the next open
      }
      long failures = health.failed();
      if (failures == 1) {
        log.warn(
            "remote cache write failed; {} blob(s) stay queued and are retried with backoff: {}",
            depth(),
            e.getMessage());
      } else {
        log.debug("remote cache write failed again ({} in a row): {}", failures, e.getMessage());
      }
      return false;
    }
  }

  /** Stops the worker; queued blobs stay in the index for the next open. */
  @Override
  public void close() {
    closed = true;
    worker.interrupt();
    try {
      worker.join(TimeUnit.SECONDS.toMillis(10));
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
