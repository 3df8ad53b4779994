package dev.kiln.cache;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.io.InterruptedIOException;
import java.time.Duration;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import okhttp3.HttpUrl;
import okhttp3.OkHttpClient;
import okhttp3.Request;
import okhttp3.Response;

/**
 * Asks a presigned URL what the object behind it is now, for {@link ImportIdentities}: one GET of
 * its first byte (a presigned URL is signed for GET only, so never HEAD), whose headers tell the
 * rest. The identity is the {@code ETag} when the storage sends one (S3, GCS and Azure do), else
 * {@code Last-Modified} with the object's total length: {@code etag:"abc"} or {@code
 * lm:<date>;len:<n>}. One attempt per check, bounded as a whole by a timeout: the request path
 * cannot afford retries, and the background asks again soon anyway.
 */
final class IdentityProbe {
  /** The total length in {@code Content-Range: bytes 0-0/1234} (or {@code bytes *}{@code /0}). */
  private static final Pattern TOTAL = Pattern.compile("bytes (?:\\d+-\\d+|\\*)/(\\d+)");

  private final OkHttpClient http;

  /** Shares {@code shared}'s connections and threads; only the deadline is its own. */
  IdentityProbe(OkHttpClient shared, Duration timeout) {
    this.http = shared.newBuilder().callTimeout(timeout).build();
  }

  /**
   * The identity of the object behind {@code url}, asked with {@code headers}.
   *
   * @throws KilnException {@link ErrorCode#IMPORT_FAILED} when the URL cannot serve the import (a
   *     4xx answer, not a URL, no ETag or Last-Modified), {@link ErrorCode#IMPORT_UNAVAILABLE} when
   *     it may work later (5xx, network); the message names the location, never the URL
   */
  String identity(String location, String url, Map<String, String> headers)
      throws KilnException, InterruptedException {
    HttpUrl parsed = url == null ? null : HttpUrl.parse(url);
    if (parsed == null) {
      throw ImportErrors.notAUrl(location);
    }
    String host = parsed.host() + ":" + parsed.port();
    try {
      try (Response first = http.newCall(request(parsed, headers, true)).execute()) {
        if (first.code() != 416) {
          return read(location, first);
        }
        // Only an empty object has no byte 0; some storages answer that without an ETag.
        String id = fromHeaders(first);
        if (id != null) {
          return id;
        }
      }
      try (Response whole = http.newCall(request(parsed, headers, false)).execute()) {
        return read(location, whole);
      }
    } catch (InterruptedIOException e) {
      if (Thread.currentThread().isInterrupted()) {
        throw new InterruptedException("import " + location + " interrupted");
      }
      throw unreachable(location, host, "timed out", e);
    } catch (IOException e) {
      throw unreachable(location, host, e.getMessage(), e);
    }
  }

  private static Request request(HttpUrl url, Map<String, String> headers, boolean oneByte) {
    Request.Builder builder = new Request.Builder().url(url);
    headers.forEach(builder::header);
    if (oneByte) {
      builder.header("Range", "bytes=0-0");
    }
    // Lengths of the stored bytes, not of a transparently gunzipped body.
    return builder.header("Accept-Encoding", "identity").get().build();
  }

  private static String read(String location, Response response) throws KilnException {
    int code = response.code();
    if (code >= 200 && code < 300) {
      String id = fromHeaders(response);
      if (id == null) {
        throw new KilnException(
            ErrorCode.IMPORT_FAILED,
            "import "
                + location
                + ": the stage's storage sends neither an ETag nor a Last-Modified date and"
                + " length for it, so Kiln cannot tell when it changes; use a stage on storage"
                + " that sends ETags (S3, GCS and Azure do)",
            null);
      }
      return id;
    }
    String reason = ImportErrors.reason(response);
    String status = code + " " + reason;
    String detail = ImportErrors.s3Error(response.body());
    if (code >= 400 && code < 500) {
      throw new KilnException(
          ErrorCode.IMPORT_FAILED, ImportErrors.clientError(location, code, reason, detail), null);
    }
    if (code >= 500) {
      throw new KilnException(
          ErrorCode.IMPORT_UNAVAILABLE,
          "import "
              + location
              + ": the presigned URL answered "
              + status
              + detail
              + "; the stage's storage is failing, try again later",
          null);
    }
    throw new KilnException(
        ErrorCode.IMPORT_FAILED, ImportErrors.notADownload(location, status + detail), null);
  }

  /** The identity the answer's headers give, or null when they give none. */
  static String fromHeaders(Response response) {
    String etag = response.header("ETag");
    if (etag != null && !etag.isBlank()) {
      return "etag:" + etag.strip();
    }
    String modified = response.header("Last-Modified");
    long length = totalLength(response);
    if (modified != null && !modified.isBlank() && length >= 0) {
      return "lm:" + modified.strip() + ";len:" + length;
    }
    return null;
  }

  /**
   * From {@code Content-Range}, else the {@code Content-Length} of a whole answer; -1 if unknown.
   */
  private static long totalLength(Response response) {
    String range = response.header("Content-Range");
    if (range != null) {
      Matcher m = TOTAL.matcher(range.strip());
      return m.matches() ? parse(m.group(1)) : -1;
    }
    if (response.code() == 200) {
      String length = response.header("Content-Length");
      return length == null ? -1 : parse(length.strip());
    }
    return -1;
  }

  private static long parse(String digits) {
    try {
      return Long.parseLong(digits);
    } catch (NumberFormatException e) {
      return -1;
    }
  }

  private static KilnException unreachable(
      String location, String host, String why, IOException cause) {
    return new KilnException(
        ErrorCode.IMPORT_UNAVAILABLE,
        "import "
            + location
            + ": could not ask "
            + host
            + " whether it changed ("
            + (why == null ? cause.getClass().getSimpleName() : why)
            + "); check that Kiln can reach the stage's storage",
        cause);
  }
}
