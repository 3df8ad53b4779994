package dev.kiln.cache;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import okhttp3.Response;
import okhttp3.ResponseBody;

/**
 * What a presigned URL's answer means to the user, in words: the standard reason phrase, the error
 * an S3-style body names, and what to do about a refusal. {@link ImportFetcher} and {@link
 * ImportIdentities} ask the same URLs, so they say the same things. No message names the URL: it is
 * a credential.
 */
final class ImportErrors {
  private static final Pattern S3_CODE = Pattern.compile("<Code>([^<]{1,200})</Code>");
  private static final Pattern S3_MESSAGE = Pattern.compile("<Message>([^<]{1,300})</Message>");
  private static final Map<Integer, String> REASONS =
      Map.ofEntries(
          Map.entry(400, "Bad Request"),
          Map.entry(401, "Unauthorized"),
          Map.entry(403, "Forbidden"),
          Map.entry(404, "Not Found"),
          Map.entry(405, "Method Not Allowed"),
          Map.entry(408, "Request Timeout"),
          Map.entry(410, "Gone"),
          Map.entry(416, "Range Not Satisfiable"),
          Map.entry(429, "Too Many Requests"),
          Map.entry(500, "Internal Server Error"),
          Map.entry(502, "Bad Gateway"),
          Map.entry(503, "Service Unavailable"),
          Map.entry(504, "Gateway Timeout"));

  private ImportErrors() {}

  /** The import has no usable URL: the caller sent none, or something that is not http(s). */
  static KilnException notAUrl(String location) {
    return new KilnException(
        ErrorCode.IMPORT_FAILED,
        "import "
            + location
            + ": the URL for it is empty or not an http(s) URL; Databend sends"
            + " a presigned URL for every import, so check the caller",
        null);
  }

  /** A 4xx answer: the URL cannot serve the import, and asking again will not change that. */
  static String clientError(String location, int code, String reason, String detail) {
    String what =
        "import " + location + ": the presigned URL answered " + code + " " + reason + detail;
    return switch (code) {
      case 403 ->
          what
              + " (expired or revoked?); run the query again so that Databend signs a fresh URL,"
              + " and check that the stage's credentials may read the file";
      case 404, 410 ->
          what
              + "; the file is no longer in the stage: upload it again, or remove it from the"
              + " function's IMPORTS";
      default -> what + "; the stage's storage refused the download, so check the stage";
    };
  }

  /** A 1xx or 3xx answer OkHttp did not follow: nothing a retry would change. */
  static String notADownload(String location, String status) {
    return "import "
        + location
        + ": the presigned URL answered "
        + status
        + ", which is not a download; check the stage's storage";
  }

  /** The standard reason phrase (servers' own vary, and HTTP/2 has none), else the server's. */
  static String reason(Response response) {
    String standard = REASONS.get(response.code());
    if (standard != null) {
      return standard;
    }
    String m = response.message();
    return m == null ? "" : m;
  }

  /** {@code " (Code: Message)"} from an S3-style XML error body, or empty. */
  static String s3Error(ResponseBody body) {
    try {
      byte[] head = body.byteStream().readNBytes(4096);
      String xml = new String(head, StandardCharsets.UTF_8);
      Matcher code = S3_CODE.matcher(xml);
      if (!code.find()) {
        return "";
      }
      Matcher message = S3_MESSAGE.matcher(xml);
      return " (" + code.group(1) + (message.find() ? ": " + message.group(1) : "") + ")";
    } catch (IOException | RuntimeException e) {
      return "";
    }
  }
}
