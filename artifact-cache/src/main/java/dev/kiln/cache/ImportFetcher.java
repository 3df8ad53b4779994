package dev.kiln.cache;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.base.SingleFlight;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import okhttp3.Call;
import okhttp3.HttpUrl;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;
import okhttp3.ResponseBody;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Fetches staged imports through presigned URLs; (tenant, location, tag) → digest, remembered in
 * RocksDB.
 *
 * <p>The URL changes on every call Databend makes, so it is never part of the key; the tag (the
 * object's ETag, or its length) is, and a changed tag downloads again. The tenant is part of the
 * key too: two tenants' {@code @stage/helper.py} with the same tag are different files. A known key
 * whose blob is still in some tier answers without any HTTP request — even when the URL has expired
 * meanwhile.
 *
 * <p>A download streams to a temporary file in the local tier while it is hashed (a 2 GiB import
 * never touches the heap), is checked against the Content-Length when the server sends one, and is
 * moved into the local tier in one step; then it is queued for the remote tier. Connection errors,
 * timeouts and 5xx answers are retried with exponential backoff; a 4xx answer is not (an expired
 * URL stays expired). One download runs per key at a time: concurrent fetches of the same import
 * wait for it.
 */
public final class ImportFetcher {
  private static final Logger log = LoggerFactory.getLogger(ImportFetcher.class);

  private record Key(String tenant, String location, String tag) {}

  private final ArtifactCache cache;
  private final CacheIndex index;
  private final LocalTier local;
  private final Tuning tuning;
  private final OkHttpClient http;
  private final SingleFlight<Key, Digest> downloads = SingleFlight.forgetting();
  private final LongAdder downloaded = new LongAdder();
  private final LongAdder avoided = new LongAdder();
  private final List<Meter> meters;

  ImportFetcher(
      ArtifactCache cache,
      CacheIndex index,
      LocalTier local,
      Tuning tuning,
      MeterRegistry registry) {
    this.cache = cache;
    this.index = index;
    this.local = local;
    this.tuning = tuning;
    this.http =
        new OkHttpClient.Builder()
            .connectTimeout(tuning.importConnectTimeout())
            .readTimeout(tuning.importReadTimeout())
            .writeTimeout(tuning.importReadTimeout())
            .followRedirects(true)
            .build();
    this.meters =
        List.of(
            FunctionCounter.builder("kiln.cache.import.downloads", downloaded, LongAdder::sum)
                .description("Imports downloaded through their presigned URL")
                .register(registry),
            FunctionCounter.builder("kiln.cache.import.avoided", avoided, LongAdder::sum)
                .description("Import fetches answered from the cache without a download")
                .register(registry));
  }

  /**
   * Returns the import's digest, downloading only when (tenant, location, tag) is unknown or its
   * blob is gone from every tier. The blob is then in the local tier ({@link
   * ArtifactCache#file(Digest)} finds it). An empty tag cannot identify content, so such an import
   * is downloaded every time.
   *
   * @throws KilnException when the download fails; its message names the location and the HTTP
   *     status
   */
  public Digest fetch(String tenant, String location, String tag, String url)
      throws KilnException, InterruptedException {
    return fetch(tenant, location, tag, url, Map.of());
  }

  /**
   * As {@link #fetch(String, String, String, String)}, sending {@code headers} with every request
   * for the URL (what a presigner returns beside it, e.g. the signed {@code host}).
   */
  public Digest fetch(
      String tenant, String location, String tag, String url, Map<String, String> headers)
      throws KilnException, InterruptedException {
    require(tenant, "tenant");
    require(location, "location");
    Key key = new Key(tenant, location, tag == null ? "" : tag);
    boolean cacheable = !key.tag().isEmpty();
    if (cacheable) {
      Optional<Digest> known = known(key);
      if (known.isPresent()) {
        avoided.increment();
        return known.get();
      }
    }
    return downloads.run(
        key,
        () -> {
          if (cacheable) {
            // Someone may have finished the same download between our lookup and now.
            Optional<Digest> again = known(key);
            if (again.isPresent()) {
              avoided.increment();
              return again.get();
            }
          }
          return download(key, url, headers, cacheable);
        });
  }

  /** Imports downloaded through their URL since the cache was opened. */
  long downloads() {
    return downloaded.sum();
  }

  /** Fetches answered without a download since the cache was opened. */
  long downloadsAvoided() {
    return avoided.sum();
  }

  private Optional<Digest> known(Key key) throws KilnException, InterruptedException {
    try {
      Optional<Digest> d = index.importDigest(key.tenant(), key.location(), key.tag());
      if (d.isPresent() && cache.file(d.get()).isPresent()) {
        return d;
      }
      return Optional.empty();
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMPORT_UNAVAILABLE,
          "import " + key.location() + ": the local cache failed: " + e.getMessage(),
          e);
    }
  }

  private Digest download(Key key, String url, Map<String, String> headers, boolean cacheable)
      throws KilnException, InterruptedException {
    String location = key.location();
    HttpUrl parsed = url == null ? null : HttpUrl.parse(url);
    if (parsed == null) {
      throw ImportErrors.notAUrl(location);
    }
    String host = parsed.host() + ":" + parsed.port();
    int attempts = Math.max(1, tuning.importAttempts());
    String lastFailure = null;
    Exception lastCause = null;
    int lastStatus = 0;
    for (int attempt = 1; attempt <= attempts; attempt++) {
      if (attempt > 1) {
        long backoff =
            Tuning.backoffNanos(
                tuning.importBackoffMin(), tuning.importBackoffMin().multipliedBy(64), attempt - 1);
        TimeUnit.NANOSECONDS.sleep(backoff);
      }
      Path temp = local.newTempFile();
      Request.Builder builder = new Request.Builder().url(parsed);
      headers.forEach(builder::header);
      Request request =
          builder
              // The exact stored bytes: no transparent gunzip of a .tar.gz served gzip-encoded.
              .header("Accept-Encoding", "identity")
              .get()
              .build();
      Call call = http.newCall(request);
      long t0 = System.nanoTime();
      try (Response response = call.execute()) {
        int code = response.code();
        if (code >= 200 && code < 300) {
          Saved saved = save(key, response.body(), temp);
          if (cacheable) {
            local(
                () -> {
                  index.putImport(key.tenant(), location, key.tag(), saved.digest());
                  return null;
                });
          }
          downloaded.increment();
          log.info(
              "import {} for tenant {} downloaded in {} ms: {} ({} bytes)",
              location,
              key.tenant(),
              TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0),
              saved.digest(),
              saved.bytes());
          return saved.digest();
        }
        String reason = ImportErrors.reason(response);
        String detail = ImportErrors.s3Error(response.body());
        if (code >= 400 && code < 500) {
          throw new KilnException(
              ErrorCode.IMPORT_FAILED,
              ImportErrors.clientError(location, code, reason, detail),
              null);
        }
        lastStatus = code;
        lastFailure = code + " " + reason + detail;
        lastCause = null;
        if (code < 500) {
          // 1xx or 3xx that OkHttp did not follow: nothing a retry would change.
          throw new KilnException(
              ErrorCode.IMPORT_FAILED, ImportErrors.notADownload(location, lastFailure), null);
        }
        log.debug("import {}: attempt {} answered {}", location, attempt, lastFailure);
      } catch (LocalDiskException e) {
        throw new KilnException(
            ErrorCode.IMPORT_UNAVAILABLE,
            "import "
                + location
                + ": could not store the download in the local cache at "
                + temp.getParent()
                + " ("
                + e.getMessage()
                + "); free disk space there and try"
                + " again",
            e.getCause());
      } catch (InterruptedIOException e) {
        if (Thread.currentThread().isInterrupted()) {
          call.cancel();
          throw new InterruptedException("import " + location + " interrupted");
        }
        lastStatus = 0;
        lastFailure = "timed out: " + e.getMessage();
        lastCause = e;
      } catch (IOException e) {
        lastStatus = 0;
        lastFailure = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
        lastCause = e;
        log.debug("import {}: attempt {} failed: {}", location, attempt, lastFailure);
      } finally {
        deleteQuietly(temp);
      }
    }
    if (lastStatus > 0) {
      throw new KilnException(
          ErrorCode.IMPORT_UNAVAILABLE,
          "import "
              + location
              + ": the presigned URL answered "
              + lastFailure
              + " on all "
              + attempts
              + " attempts; the stage's storage is failing, try again later",
          null);
    }
    throw new KilnException(
        ErrorCode.IMPORT_UNAVAILABLE,
        "import "
            + location
            + ": could not download it from "
            + host
            + " in "
            + attempts
            + " attempts ("
            + lastFailure
            + "); check that Kiln can reach the stage's storage",
        lastCause);
  }

  /**
   * Streams the body to {@code temp} (received on this thread, hashed and written on another),
   * checks its length and moves it into the cache.
   */
  private record Saved(Digest digest, long bytes) {}

  private Saved save(Key key, ResponseBody body, Path temp)
      throws IOException, InterruptedException {
    long expected = body.contentLength();
    long n = 0;
    Digest d;
    try (InputStream in = body.byteStream();
        HashingWriter out = openLocal(temp)) {
      while (true) {
        byte[] buf = local(out::take);
        int r = in.readNBytes(buf, 0, buf.length);
        if (r <= 0) {
          break;
        }
        out.put(buf, r);
        n += r;
        if (Thread.interrupted()) {
          throw new InterruptedException("import " + key.location() + " interrupted");
        }
      }
      d = local(out::finish);
    }
    if (expected >= 0 && n != expected) {
      throw new IOException("the download ended after " + n + " of " + expected + " bytes");
    }
    long bytes = n;
    local(
        () -> {
          local.adopt(d, temp, bytes);
          cache.enqueueRemote(d);
          return null;
        });
    return new Saved(d, n);
  }

  private interface LocalStep<T> {
    T run() throws IOException, InterruptedException;
  }

  /** Runs a step that touches only local disk; its failures are not worth a retry. */
  private static <T> T local(LocalStep<T> step) throws LocalDiskException, InterruptedException {
    try {
      return step.run();
    } catch (IOException e) {
      throw new LocalDiskException(e.getMessage(), e);
    }
  }

  private static HashingWriter openLocal(Path temp) throws LocalDiskException {
    try {
      return new HashingWriter(temp, 1 << 20);
    } catch (IOException e) {
      throw new LocalDiskException(temp.getParent() + ": " + e.getMessage(), e);
    }
  }

  private static void require(String value, String what) {
    if (value == null || value.isEmpty()) {
      throw new IllegalArgumentException("an import fetch needs a " + what);
    }
  }

  private static void deleteQuietly(Path p) {
    try {
      Files.deleteIfExists(p);
    } catch (IOException e) {
      log.debug("could not delete {}: {}", p, e.toString());
    }
  }

  /** The HTTP client for presigned URLs; {@link ImportIdentities} shares its connections. */
  OkHttpClient http() {
    return http;
  }

  /** Shuts down the HTTP client's threads and connections (the cache does, on its close). */
  void close() {
    http.dispatcher().executorService().shutdown();
    http.connectionPool().evictAll();
  }

  void unregister(MeterRegistry registry) {
    meters.forEach(registry::remove);
  }
}
