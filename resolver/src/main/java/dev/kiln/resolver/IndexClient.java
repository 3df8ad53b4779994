package dev.kiln.resolver;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.FileNotFoundException;
import java.io.IOException;
import java.io.InputStream;
import java.net.ConnectException;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.URLDecoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.Optional;
import java.util.stream.Stream;
import org.jsoup.Jsoup;
import org.jsoup.nodes.Document;
import org.jsoup.nodes.Element;

/**
 * Reads the simple repository API: PEP 691 JSON when the index offers it, PEP 503 HTML otherwise
 * (with PEP 592 yanking, PEP 658/714 metadata and {@code #sha256=} fragments), over http(s) with
 * optional basic auth, or from a {@code file://} directory laid out like PEP 503.
 *
 * <p>Redirects are followed by hand so credentials are only ever sent to the host they belong to.
 */
final class IndexClient implements AutoCloseable {
  static final String ACCEPT = "application/vnd.pypi.simple.v1+json, text/html;q=0.1";
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final int MAX_REDIRECTS = 10;

  /** One configured index: its URL without userinfo, and the Authorization header it needs. */
  private record Index(URI url, Optional<String> authorization) {}

  private final IndexConfig config;
  private final List<Index> indexes;
  private final HttpClient http;

  IndexClient(IndexConfig config) {
    this.config = config;
    List<Index> list = new ArrayList<>();
    for (URI u : config.indexUrls()) {
      Optional<String> auth = Optional.empty();
      String userInfo = u.getRawUserInfo();
      if (userInfo != null && !userInfo.isEmpty()) {
        int colon = userInfo.indexOf(':');
        String user = decode(colon < 0 ? userInfo : userInfo.substring(0, colon));
        String pass = colon < 0 ? "" : decode(userInfo.substring(colon + 1));
        auth = Optional.of(basic(user, pass));
      } else if (config.username().isPresent()) {
        auth = Optional.of(basic(config.username().get(), config.password().orElse("")));
      }
      list.add(new Index(withTrailingSlash(withoutUserInfo(u)), auth));
    }
    this.indexes = List.copyOf(list);
    this.http =
        HttpClient.newBuilder()
            .connectTimeout(config.timeout())
            .followRedirects(HttpClient.Redirect.NEVER)
            .build();
  }

  /** The index URLs, without credentials, in order. */
  List<URI> indexUrls() {
    return indexes.stream().map(Index::url).toList();
  }

  /**
   * The project's files from the first index that has the project (later indexes are not asked once
   * one has it); empty when no index has it.
   */
  Optional<ProjectPage> project(String name)
      throws IOException, InterruptedException, KilnException {
    for (Index index : indexes) {
      Optional<ProjectPage> page =
          index.url().getScheme().equalsIgnoreCase("file")
              ? fileProject(index.url(), name)
              : httpProject(index, name);
      if (page.isPresent()) {
        return page;
      }
    }
    return Optional.empty();
  }

  private Optional<ProjectPage> httpProject(Index index, String name)
      throws IOException, InterruptedException, KilnException {
    URI page = index.url().resolve(name + "/");
    HttpResponse<InputStream> response = get(page, ACCEPT);
    int status = response.statusCode();
    try (InputStream body = response.body()) {
      if (status == 404 || status == 410) {
        return Optional.empty();
      }
      if (status == 401 || status == 403) {
        throw new KilnException(
            ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
            "package index "
                + index.url()
                + " refused access to '"
                + name
                + "' (HTTP "
                + status
                + "); check the index credentials (user:password in the --index-url, or the"
                + " index username/password settings)");
      }
      if (status / 100 != 2) {
        throw new IOException(
            "package index " + index.url() + " answered HTTP " + status + " for " + page);
      }
      byte[] bytes = body.readAllBytes();
      URI finalUrl = response.uri();
      String type = response.headers().firstValue("Content-Type").orElse("text/html");
      List<DistFile> files;
      if (type.toLowerCase(Locale.ROOT).contains("json")) {
        files = parseJson(new String(bytes, StandardCharsets.UTF_8), finalUrl, index.url(), name);
      } else {
        files = parseHtml(new String(bytes, charset(type)), finalUrl);
      }
      return Optional.of(new ProjectPage(name, index.url(), files));
    }
  }

  private static Optional<ProjectPage> fileProject(URI index, String name)
      throws IOException, KilnException {
    Path base = Path.of(index);
    Path dir = base.resolve(name);
    if (Files.isDirectory(dir)) {
      Path html = dir.resolve("index.html");
      if (Files.isRegularFile(html)) {
        String text = Files.readString(html, StandardCharsets.UTF_8);
        return Optional.of(new ProjectPage(name, index, parseHtml(text, dir.toUri())));
      }
      return Optional.of(new ProjectPage(name, index, listDirectory(dir, name)));
    }
    if (!Files.isDirectory(base)) {
      throw new KilnException(
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          "package index "
              + index
              + " is not a directory; a file:// index is a directory with"
              + " one sub-directory per project (PEP 503) or a flat directory of wheels");
    }
    // A flat directory of distribution files (pip's --find-links layout) works too.
    List<DistFile> files = listDirectory(base, name);
    return files.isEmpty() ? Optional.empty() : Optional.of(new ProjectPage(name, index, files));
  }

  private static List<DistFile> listDirectory(Path dir, String name) throws IOException {
    List<DistFile> files = new ArrayList<>();
    try (Stream<Path> s = Files.list(dir)) {
      for (Path p : s.sorted().toList()) {
        String f = p.getFileName().toString();
        WheelFilename w = WheelFilename.parse(f);
        boolean ours =
            (w != null && w.name().equals(name)) || WheelFilename.sdistVersion(name, f) != null;
        if (ours && Files.isRegularFile(p)) {
          files.add(new DistFile(f, p.toUri(), null, null, false, false, null));
        }
      }
    }
    return files;
  }

  /** PEP 691: {@code {"files": [{"filename", "url", "hashes", "requires-python", ...}]}}. */
  static List<DistFile> parseJson(String text, URI pageUrl, URI index, String name)
      throws KilnException {
    JsonNode root;
    try {
      root = JSON.readTree(text);
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          "package index " + index + " sent invalid JSON for '" + name + "': " + e.getMessage());
    }
    JsonNode apiVersion = root.path("meta").path("api-version");
    if (apiVersion.isTextual() && !apiVersion.textValue().startsWith("1.")) {
      throw new KilnException(
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          "package index "
              + index
              + " speaks simple API version "
              + apiVersion.textValue()
              + "; Kiln reads version 1.x");
    }
    List<DistFile> files = new ArrayList<>();
    for (JsonNode f : root.path("files")) {
      String filename = f.path("filename").asText("");
      String href = f.path("url").asText("");
      if (filename.isEmpty() || href.isEmpty()) {
        continue;
      }
      URI url = resolve(pageUrl, href);
      if (url == null) {
        continue;
      }
      String sha = lowerHex(f.path("hashes").path("sha256").asText(null));
      String rp = f.path("requires-python").isTextual() ? f.path("requires-python").asText() : null;
      JsonNode y = f.path("yanked");
      boolean yanked = y.isTextual() || (y.isBoolean() && y.booleanValue());
      JsonNode meta =
          f.has("core-metadata") ? f.get("core-metadata") : f.path("dist-info-metadata");
      boolean hasMeta = meta.isObject() || (meta.isBoolean() && meta.booleanValue());
      String metaSha = meta.isObject() ? lowerHex(meta.path("sha256").asText(null)) : null;
      files.add(new DistFile(filename, withoutFragment(url), sha, rp, yanked, hasMeta, metaSha));
    }
    return files;
  }

  /** PEP 503 HTML: one anchor per file, hash in the fragment, PEP 592/658/714 attributes. */
  static List<DistFile> parseHtml(String text, URI pageUrl) {
    Document doc = Jsoup.parse(text);
    URI base = pageUrl;
    Element baseTag = doc.selectFirst("base[href]");
    if (baseTag != null) {
      URI b = resolve(pageUrl, baseTag.attr("href"));
      base = b == null ? pageUrl : b;
    }
    List<DistFile> files = new ArrayList<>();
    for (Element a : doc.select("a[href]")) {
      URI url = resolve(base, a.attr("href"));
      if (url == null) {
        continue;
      }
      String path = url.getRawPath() == null ? "" : url.getRawPath();
      String filename = decode(path.substring(path.lastIndexOf('/') + 1));
      if (filename.isEmpty()) {
        filename = a.text().strip();
      }
      String sha = null;
      String fragment = url.getRawFragment();
      if (fragment != null && fragment.startsWith("sha256=")) {
        sha = lowerHex(fragment.substring("sha256=".length()));
      }
      String rp = a.hasAttr("data-requires-python") ? a.attr("data-requires-python") : null;
      boolean yanked = a.hasAttr("data-yanked");
      String meta =
          a.hasAttr("data-core-metadata")
              ? a.attr("data-core-metadata")
              : a.hasAttr("data-dist-info-metadata") ? a.attr("data-dist-info-metadata") : null;
      boolean hasMeta = meta != null && !meta.equalsIgnoreCase("false");
      String metaSha =
          meta != null && meta.startsWith("sha256=") ? lowerHex(meta.substring(7)) : null;
      files.add(new DistFile(filename, withoutFragment(url), sha, rp, yanked, hasMeta, metaSha));
    }
    return files;
  }

  /**
   * Opens a file for reading: file:// from disk, http(s) with the credentials of the index on the
   * same host. The message of a failure names the URL.
   */
  InputStream open(URI url) throws IOException, InterruptedException {
    if ("file".equalsIgnoreCase(url.getScheme())) {
      try {
        return Files.newInputStream(Path.of(url));
      } catch (NoSuchFileException | FileNotFoundException e) {
        throw new IOException("the index lists " + url + " but the file does not exist", e);
      }
    }
    HttpResponse<InputStream> response = get(url, "*/*");
    if (response.statusCode() / 100 != 2) {
      response.body().close();
      throw new IOException("downloading " + url + " failed: HTTP " + response.statusCode());
    }
    return response.body();
  }

  /** GET with manual redirects: the Authorization header goes only to the index's own host. */
  private HttpResponse<InputStream> get(URI url, String accept)
      throws IOException, InterruptedException {
    URI current = url;
    for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
      HttpRequest.Builder b =
          HttpRequest.newBuilder(current)
              .timeout(config.timeout())
              .header("Accept", accept)
              .header("User-Agent", "kiln-resolver");
      authorizationFor(current).ifPresent(h -> b.header("Authorization", h));
      HttpResponse<InputStream> r;
      try {
        r = http.send(b.GET().build(), HttpResponse.BodyHandlers.ofInputStream());
      } catch (HttpTimeoutException e) {
        throw new IOException(
            "package index request to " + current + " timed out after " + config.timeout(), e);
      } catch (ConnectException e) {
        throw new IOException(
            "package index at "
                + current.getScheme()
                + "://"
                + current.getAuthority()
                + " is unreachable ("
                + Objects.toString(e.getMessage(), "connection refused")
                + ")",
            e);
      }
      int status = r.statusCode();
      Optional<String> location = r.headers().firstValue("Location");
      if ((status == 301 || status == 302 || status == 303 || status == 307 || status == 308)
          && location.isPresent()) {
        r.body().close();
        URI next = resolve(current, location.get());
        if (next == null) {
          throw new IOException(current + " redirected to an invalid URL: " + location.get());
        }
        current = next;
        continue;
      }
      return r;
    }
    throw new IOException("too many redirects starting at " + url);
  }

  private Optional<String> authorizationFor(URI url) {
    for (Index index : indexes) {
      URI i = index.url();
      if (index.authorization().isPresent()
          && Objects.equals(i.getScheme(), url.getScheme())
          && Objects.equals(i.getHost(), url.getHost())
          && port(i) == port(url)) {
        return index.authorization();
      }
    }
    return Optional.empty();
  }

  private static int port(URI u) {
    if (u.getPort() >= 0) {
      return u.getPort();
    }
    return "https".equalsIgnoreCase(u.getScheme()) ? 443 : 80;
  }

  private static String basic(String user, String password) {
    return "Basic "
        + Base64.getEncoder()
            .encodeToString((user + ":" + password).getBytes(StandardCharsets.UTF_8));
  }

  static URI withoutUserInfo(URI u) {
    if (u.getRawUserInfo() == null) {
      return u;
    }
    try {
      return new URI(
          u.getScheme(),
          null,
          u.getHost(),
          u.getPort(),
          u.getPath(),
          u.getQuery(),
          u.getFragment());
    } catch (URISyntaxException e) {
      throw new IllegalArgumentException("cannot remove credentials from an index URL", e);
    }
  }

  private static URI withTrailingSlash(URI u) {
    String s = u.toString();
    return s.endsWith("/") ? u : URI.create(s + "/");
  }

  private static URI withoutFragment(URI u) {
    URI clean = withoutUserInfo(u);
    if (clean.getRawFragment() == null) {
      return clean;
    }
    String s = clean.toString();
    return URI.create(s.substring(0, s.indexOf('#')));
  }

  private static URI resolve(URI base, String href) {
    try {
      return base.resolve(new URI(href.strip().replace(" ", "%20")));
    } catch (URISyntaxException | IllegalArgumentException e) {
      return null; // an anchor that is not a URL is not a file
    }
  }

  private static String lowerHex(String s) {
    if (s == null) {
      return null;
    }
    String h = s.strip().toLowerCase(Locale.ROOT);
    return h.matches("[0-9a-f]{64}") ? h : null;
  }

  private static String decode(String s) {
    return URLDecoder.decode(s.replace("+", "%2B"), StandardCharsets.UTF_8);
  }

  private static java.nio.charset.Charset charset(String contentType) {
    for (String part : contentType.split(";")) {
      String p = part.strip().toLowerCase(Locale.ROOT);
      if (p.startsWith("charset=")) {
        try {
          return java.nio.charset.Charset.forName(p.substring(8).replace("\"", ""));
        } catch (RuntimeException e) {
          return StandardCharsets.UTF_8;
        }
      }
    }
    return StandardCharsets.UTF_8;
  }

  @Override
  public void close() {
    http.close();
  }
}
