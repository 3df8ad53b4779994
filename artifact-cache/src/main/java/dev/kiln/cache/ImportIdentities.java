package dev.kiln.cache;

import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.Ticker;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.base.SingleFlight;
import java.util.Map;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import okhttp3.OkHttpClient;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The content identity of staged imports that arrive without a tag, per (tenant, location):
 * Databend's {@code CreateWorker} sends each import only as a presigned URL that is new on every
 * query, while Kiln keys a UDF by the (location, tag) of its imports. The identity is the object's
 * ETag, else its Last-Modified date and length, read from a GET of its first byte.
 *
 * <p><b>What a user can rely on:</b> a query that starts at least 2 s after an upload has finished
 * uses the new file. Why: {@link #tag} never returns an identity found by a check that began more
 * than {@code freshness} (1 s) before the call — with an older one the call checks itself — and a
 * check sees the file as the storage holds it at some moment after the check began. That is at most
 * 1 s of staleness, plus one check: the other second is room for a storage whose reads trail its
 * writes by a check's round trip (behind a cache, say), which Kiln cannot see. Without an ETag, two
 * uploads of the same length within one second look the same (Last-Modified counts whole seconds).
 *
 * <p><b>The hot path makes no request.</b> Every (tenant, location) asked for within the last
 * {@code activeWindow} (10 min) is checked again in the background every half {@code freshness},
 * with the URL and headers of its latest request, so that a request finds an identity younger than
 * {@code freshness} in memory. Half, because an identity is as old as the start of its check: with
 * a whole period it would be too old while the next check is under way. An entry idle for longer
 * than the window is dropped and no longer polled; its next request checks on the request path,
 * once, and keeps it fresh again. Concurrent checks of one (tenant, location) are one request
 * ({@link SingleFlight}).
 *
 * <p><b>Failures.</b> A background check that fails keeps the last identity, which then ages until
 * a request checks itself and reports the failure; it is logged at debug, naming the location and
 * never the URL (a credential). On the request path a failure is a {@link KilnException}: {@link
 * ErrorCode#IMPORT_FAILED} for a 4xx answer, {@link ErrorCode#IMPORT_UNAVAILABLE} for a 5xx answer
 * or a network failure, in the words {@link ImportFetcher} uses.
 *
 * <p><b>Bounds.</b> At most 10,000 entries are tracked (each keeps its latest URL), and at most 64
 * background checks run at a time; a round that finds no free slot leaves the remaining entries to
 * the next round, and their requests check themselves if they grow too old meanwhile. Time (a
 * Caffeine {@link Ticker}), the scheduler of the rounds and the executor of the checks are
 * injected, so that tests move time and run rounds themselves; closing the cache stops both.
 */
public final class ImportIdentities {
  private static final Logger log = LoggerFactory.getLogger(ImportIdentities.class);

  /** Background checks in flight at most. */
  private static final int MAX_CHECKS = 64;

  private record Key(String tenant, String location) {}

  /** What the background asks with: the latest request's URL and headers. */
  private record Source(String url, Map<String, String> headers) {}

  /** An identity, and when (ticker nanos) the check that found it began. */
  private record Known(String tag, long checkedAt) {}

  private static final class Entry {
    volatile long lastAsked;
    volatile Source source;
    volatile Known known;

    void asked(long now, String url, Map<String, String> headers) {
      lastAsked = now;
      Source s = source;
      if (s == null || !s.url().equals(url) || !s.headers().equals(headers)) {
        source = new Source(url, Map.copyOf(headers));
      }
    }
  }

  private final IdentityProbe probe;
  private final Ticker ticker;
  private final ScheduledExecutorService scheduler;
  private final Executor checks;
  private final long freshness;
  private final long activeWindow;
  private final Cache<Key, Entry> entries;
  private final SingleFlight<Key, Known> flights = SingleFlight.forgetting();
  private final Semaphore slots = new Semaphore(MAX_CHECKS);

  /**
   * Identities asked through {@code http} (sharing its connections), on the system ticker, with a
   * scheduler thread of their own and background checks on virtual threads.
   */
  static ImportIdentities open(OkHttpClient http, Tuning tuning) {
    return new ImportIdentities(
        http,
        tuning,
        Ticker.systemTicker(),
        Executors.newSingleThreadScheduledExecutor(
            Thread.ofPlatform().daemon().name("kiln-import-identities").factory()),
        Executors.newThreadPerTaskExecutor(
            Thread.ofVirtual().name("kiln-import-identity-", 0).factory()));
  }

  /**
   * With the time source, the scheduler that runs the background rounds and the executor that runs
   * their checks; both are shut down by {@link #close}.
   */
  ImportIdentities(
      OkHttpClient http,
      Tuning tuning,
      Ticker ticker,
      ScheduledExecutorService scheduler,
      Executor checks) {
    this.probe = new IdentityProbe(http, tuning.identityTimeout());
    this.ticker = ticker;
    this.scheduler = scheduler;
    this.checks = checks;
    this.freshness = tuning.identityFreshness().toNanos();
    this.activeWindow = tuning.identityActiveWindow().toNanos();
    this.entries =
        Caffeine.newBuilder()
            .maximumSize(tuning.identityMaxEntries())
            .executor(Runnable::run)
            .build();
    long period = Math.max(1, freshness / 2);
    scheduler.scheduleAtFixedRate(this::revalidate, period, period, TimeUnit.NANOSECONDS);
  }

  /**
   * The identity of the import at {@code location} of {@code tenant} as of at most {@code
   * freshness} ago, e.g. {@code etag:"abc"} or {@code lm:<date>;len:<n>}: from memory when the one
   * known is that fresh, else from one ranged GET of {@code url} (its first byte) with {@code
   * headers}. The URL and headers are also what the background asks with from now on.
   *
   * @throws KilnException {@link ErrorCode#IMPORT_FAILED} when the URL cannot serve the import,
   *     {@link ErrorCode#IMPORT_UNAVAILABLE} when it may work later; the message names the
   *     location, never the URL
   */
  public String tag(String tenant, String location, String url, Map<String, String> headers)
      throws KilnException, InterruptedException {
    require(tenant, "tenant");
    require(location, "location");
    Map<String, String> given = headers == null ? Map.of() : headers;
    long now = ticker.read();
    Key key = new Key(tenant, location);
    Entry entry = entries.get(key, k -> new Entry());
    entry.asked(now, url == null ? "" : url, given);
    Known known = entry.known;
    if (known != null && now - known.checkedAt() <= freshness) {
      return known.tag();
    }
    while (true) {
      Known checked = flights.run(key, () -> check(key, entry, url, given));
      if (now - checked.checkedAt() <= freshness) {
        return checked.tag();
      }
      // This call joined a (slow) check that began too long before it: ask again.
    }
  }

  /** Asks the URL now and remembers the answer; one at a time per key (single flight). */
  private Known check(Key key, Entry entry, String url, Map<String, String> headers)
      throws KilnException, InterruptedException {
    long began = ticker.read();
    String tag = probe.identity(key.location(), url, headers);
    Known before = entry.known;
    Known now = new Known(tag, began);
    entry.known = now;
    if (before != null && !before.tag().equals(tag)) {
      log.info(
          "import {} of tenant {} changed: {} -> {}",
          key.location(),
          key.tenant(),
          before.tag(),
          tag);
    }
    return now;
  }

  /**
   * One background round: drops entries idle for longer than the window, and starts a check of
   * every other one that is not being checked already (as many as there are free slots).
   */
  void revalidate() {
    try {
      long now = ticker.read();
      for (Map.Entry<Key, Entry> e : entries.asMap().entrySet()) {
        Key key = e.getKey();
        Entry entry = e.getValue();
        if (now - entry.lastAsked > activeWindow) {
          entries.asMap().remove(key, entry);
          continue;
        }
        if (flights.contains(key)) {
          continue;
        }
        if (!slots.tryAcquire()) {
          log.debug("import identities: all {} check slots busy; the rest wait", MAX_CHECKS);
          return;
        }
        Source source = entry.source;
        try {
          checks.execute(() -> checkInBackground(key, entry, source));
        } catch (RejectedExecutionException closed) {
          slots.release();
          return;
        }
      }
    } catch (RuntimeException e) {
      // Thrown out of a periodic task, it would cancel every later round.
      log.warn("import identities: a background round failed", e);
    }
  }

  private void checkInBackground(Key key, Entry entry, Source source) {
    try {
      flights.run(key, () -> check(key, entry, source.url(), source.headers()));
    } catch (KilnException e) {
      log.debug(
          "import {} of tenant {}: background check failed, keeping the last identity: {}",
          key.location(),
          key.tenant(),
          e.getMessage());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt(); // closing
    } catch (RuntimeException e) {
      // E.g. a header OkHttp refuses (its message may quote the header): the class name only.
      log.debug(
          "import {} of tenant {}: background check failed: {}",
          key.location(),
          key.tenant(),
          e.getClass().getName());
    } finally {
      slots.release();
    }
  }

  /** (tenant, location) pairs tracked now. */
  long size() {
    entries.cleanUp();
    return entries.estimatedSize();
  }

  /** Stops the background rounds and their checks (the cache does, on its close). */
  void close() {
    scheduler.shutdownNow();
    if (checks instanceof ExecutorService service) {
      service.shutdownNow();
    }
  }

  private static void require(String value, String what) {
    if (value == null || value.isEmpty()) {
      throw new IllegalArgumentException("an import identity needs a " + what);
    }
  }
}
