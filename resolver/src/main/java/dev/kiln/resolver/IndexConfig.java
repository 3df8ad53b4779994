package dev.kiln.resolver;

import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;

/**
 * Index settings: URLs tried in order, a package is taken from the first index that has it (so a
 * public index cannot shadow a private package: no dependency confusion). http(s) and file:// URLs;
 * credentials from URL userinfo or explicitly (then sent to every index host).
 *
 * @param indexUrls simple-API base URLs such as {@code https://pypi.org/simple}, in order
 * @param username basic-auth user for indexes without userinfo in their URL
 * @param password basic-auth password that goes with {@code username}
 * @param timeout connect and read timeout of each request
 */
public record IndexConfig(
    List<URI> indexUrls, Optional<String> username, Optional<String> password, Duration timeout) {

  /** The public Python Package Index. */
  public static final URI PYPI = URI.create("https://pypi.org/simple/");

  public IndexConfig {
    indexUrls = List.copyOf(indexUrls);
    Objects.requireNonNull(username, "username");
    Objects.requireNonNull(password, "password");
    Objects.requireNonNull(timeout, "timeout");
    if (indexUrls.isEmpty()) {
      throw new IllegalArgumentException("at least one index URL is needed, e.g. " + PYPI);
    }
    for (URI u : indexUrls) {
      String scheme = u.getScheme() == null ? "" : u.getScheme().toLowerCase(Locale.ROOT);
      if (!List.of("http", "https", "file").contains(scheme)) {
        throw new IllegalArgumentException(
            "index URL " + u + " must be http://, https:// or file://");
      }
    }
    if (timeout.isNegative() || timeout.isZero()) {
      throw new IllegalArgumentException("index timeout must be positive, got " + timeout);
    }
  }

  /**
   * Index URLs as text (a plain directory path is taken as a file:// URL), no explicit credentials,
   * 30 s timeout.
   */
  public static IndexConfig of(List<String> urls) {
    List<URI> out = new ArrayList<>();
    for (String u : urls) {
      String s = u.strip();
      out.add(s.startsWith("/") ? java.nio.file.Path.of(s).toUri() : URI.create(s));
    }
    return new IndexConfig(out, Optional.empty(), Optional.empty(), Duration.ofSeconds(30));
  }

  /** The index URLs without credentials, for cache keys, logs and messages. */
  public List<String> redactedUrls() {
    List<String> out = new ArrayList<>();
    for (URI u : indexUrls) {
      out.add(IndexClient.withoutUserInfo(u).toString());
    }
    return out;
  }

  @Override
  public String toString() {
    return "IndexConfig"
        + redactedUrls()
        + (username.isPresent() ? " (user " + username.get() + ")" : "")
        + " timeout "
        + timeout;
  }
}
