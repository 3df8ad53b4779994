package dev.kiln.image;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.OptionalLong;

/**
 * A wheel's {@code RECORD}: one CSV row per file, {@code path,algorithm=urlsafe-base64-digest,size}
 * (the dialect of Python's {@code csv} module: commas, double quotes, doubled quotes inside).
 */
final class WheelRecord {
  /** One row: the expected digest (null when the row has no hash) and size (-1 when absent). */
  record Row(String path, String algorithm, byte[] digest, long size) {
    boolean hasHash() {
      return digest != null;
    }
  }

  private WheelRecord() {}

  /**
   * Parses RECORD text into rows by path.
   *
   * @throws InvalidWheelException on a malformed row or a hash algorithm weaker than sha256
   */
  static Map<String, Row> parse(String wheel, String text) throws InvalidWheelException {
    Map<String, Row> rows = new LinkedHashMap<>();
    int lineNo = 0;
    for (List<String> fields : csv(wheel, text)) {
      lineNo++;
      if (fields.size() == 1 && fields.get(0).isEmpty()) {
        continue; // a blank line
      }
      if (fields.size() < 1 || fields.size() > 3) {
        throw invalid(wheel, "RECORD row " + lineNo + " has " + fields.size() + " fields, not 3");
      }
      String path = fields.get(0);
      String hash = fields.size() > 1 ? fields.get(1) : "";
      String size = fields.size() > 2 ? fields.get(2) : "";
      String algorithm = null;
      byte[] digest = null;
      if (!hash.isEmpty()) {
        int eq = hash.indexOf('=');
        if (eq <= 0) {
          throw invalid(wheel, "RECORD row for " + path + " has a malformed hash '" + hash + "'");
        }
        algorithm = hash.substring(0, eq);
        if (javaAlgorithm(algorithm) == null) {
          throw invalid(
              wheel,
              "RECORD row for "
                  + path
                  + " uses hash algorithm '"
                  + algorithm
                  + "'; wheels must use sha256 or stronger (sha384, sha512)");
        }
        try {
          digest = Base64.getUrlDecoder().decode(stripPadding(hash.substring(eq + 1)));
        } catch (IllegalArgumentException e) {
          throw invalid(wheel, "RECORD row for " + path + " has a hash that is not base64url");
        }
      }
      long parsedSize = -1;
      if (!size.isEmpty()) {
        try {
          parsedSize = Long.parseLong(size);
        } catch (NumberFormatException e) {
          throw invalid(wheel, "RECORD row for " + path + " has a size '" + size + "'");
        }
      }
      if (rows.put(path, new Row(path, algorithm, digest, parsedSize)) != null) {
        throw invalid(wheel, "RECORD lists " + path + " twice");
      }
    }
    return rows;
  }

  /** The JCA name of a RECORD hash algorithm, or null when it is not acceptable. */
  static String javaAlgorithm(String algorithm) {
    return switch (algorithm) {
      case "sha256" -> "SHA-256";
      case "sha384" -> "SHA-384";
      case "sha512" -> "SHA-512";
      default -> null;
    };
  }

  static MessageDigest digest(String algorithm) {
    try {
      return MessageDigest.getInstance(javaAlgorithm(algorithm));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("the JDK lacks " + algorithm, e);
    }
  }

  /** {@code sha256=<urlsafe base64 without padding>}, as RECORD writes hashes. */
  static String hashField(String algorithm, byte[] digest) {
    return algorithm + "=" + Base64.getUrlEncoder().withoutPadding().encodeToString(digest);
  }

  /** One CSV row in the form Python's csv writer would produce, with a trailing newline. */
  static String row(String path, String hash, OptionalLong size) {
    return quote(path) + "," + hash + "," + (size.isPresent() ? size.getAsLong() : "") + "\n";
  }

  private static String quote(String field) {
    if (field.indexOf(',') < 0 && field.indexOf('"') < 0 && field.indexOf('\n') < 0) {
      return field;
    }
    return "\"" + field.replace("\"", "\"\"") + "\"";
  }

  private static String stripPadding(String b64) {
    int end = b64.length();
    while (end > 0 && b64.charAt(end - 1) == '=') {
      end--;
    }
    return b64.substring(0, end);
  }

  /** Splits CSV text into rows of fields. */
  private static List<List<String>> csv(String wheel, String text) throws InvalidWheelException {
    List<List<String>> rows = new ArrayList<>();
    List<String> fields = new ArrayList<>();
    StringBuilder field = new StringBuilder();
    boolean quoted = false;
    boolean fieldStarted = false;
    for (int i = 0; i < text.length(); i++) {
      char c = text.charAt(i);
      if (quoted) {
        if (c == '"') {
          if (i + 1 < text.length() && text.charAt(i + 1) == '"') {
            field.append('"');
            i++;
          } else {
            quoted = false;
          }
        } else {
          field.append(c);
        }
      } else if (c == '"' && field.isEmpty()) {
        quoted = true;
        fieldStarted = true;
      } else if (c == ',') {
        fields.add(field.toString());
        field.setLength(0);
        fieldStarted = true;
      } else if (c == '\n' || c == '\r') {
        if (c == '\r' && i + 1 < text.length() && text.charAt(i + 1) == '\n') {
          i++;
        }
        fields.add(field.toString());
        rows.add(fields);
        fields = new ArrayList<>();
        field.setLength(0);
        fieldStarted = false;
      } else {
        field.append(c);
        fieldStarted = true;
      }
    }
    if (quoted) {
      throw invalid(wheel, "RECORD ends inside a quoted field");
    }
    if (fieldStarted || !field.isEmpty() || !fields.isEmpty()) {
      fields.add(field.toString());
      rows.add(fields);
    }
    return rows;
  }

  static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  private static InvalidWheelException invalid(String wheel, String problem) {
    return new InvalidWheelException(
        "wheel " + wheel + " is malformed: " + problem + "; rebuild or re-download the wheel");
  }
}
