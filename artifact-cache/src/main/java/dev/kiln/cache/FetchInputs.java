package dev.kiln.cache;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * The provisioning pipeline's fetch step: brings every input an image needs into the local tier of
 * the {@link ArtifactCache} and hands back their files. Staged imports come through their presigned
 * URLs ({@link ImportFetcher}: a known (tenant, location, tag) is never downloaded again); other
 * blobs (wheels) are looked up by digest and downloaded once when missing, by a downloader the
 * caller supplies.
 */
public final class FetchInputs {

  /**
   * A staged import to fetch: stage location, presigned URL, the headers to send with it, tag
   * (empty when unknown).
   */
  public record Import(String location, String url, Map<String, String> headers, String tag) {
    public Import {
      Objects.requireNonNull(location, "location");
      Objects.requireNonNull(url, "url");
      headers = Map.copyOf(headers);
      Objects.requireNonNull(tag, "tag");
    }
  }

  /** Writes a blob's bytes; failures that are not {@link KilnException}s are I/O failures. */
  @FunctionalInterface
  public interface Downloader {
    void writeTo(OutputStream out) throws KilnException, IOException, InterruptedException;
  }

  /**
   * A blob known by its digest, downloaded when the cache lacks it.
   *
   * @param digest the sha256 the bytes must have
   * @param name what the blob is, for messages (e.g. a wheel's file name)
   * @param downloader writes the bytes
   * @param unavailable the code an I/O failure of the download is reported with
   */
  public record Download(Digest digest, String name, Downloader downloader, ErrorCode unavailable) {
    public Download {
      Objects.requireNonNull(digest, "digest");
      Objects.requireNonNull(name, "name");
      Objects.requireNonNull(downloader, "downloader");
      Objects.requireNonNull(unavailable, "unavailable");
    }
  }

  /** A fetched input: its name (an import's location, a blob's name), digest and local file. */
  public record Fetched(String name, Digest digest, Path file) {}

  private final ArtifactCache cache;
  private final Path tmp;

  /** Fetches into {@code cache}; downloads of blobs are spooled under {@code tmp}. */
  public FetchInputs(ArtifactCache cache, Path tmp) throws IOException {
    this.cache = Objects.requireNonNull(cache, "cache");
    this.tmp = Files.createDirectories(tmp);
  }

  /**
   * Every import of the tenant's UDF, in the given order.
   *
   * @throws KilnException {@link ErrorCode#IMPORT_FAILED} when a URL cannot serve the import (a 4xx
   *     answer), {@link ErrorCode#IMPORT_UNAVAILABLE} when it may work later
   */
  public List<Fetched> imports(String tenant, List<Import> imports)
      throws KilnException, InterruptedException {
    List<Fetched> out = new ArrayList<>();
    for (Import imp : imports) {
      Digest digest =
          cache.imports().fetch(tenant, imp.location(), imp.tag(), imp.url(), imp.headers());
      out.add(new Fetched(imp.location(), digest, file(digest, "import " + imp.location())));
    }
    return out;
  }

  /**
   * Every blob, in the given order: from the cache by digest, downloaded (once) when missing.
   *
   * @throws KilnException the download's own error or, for an I/O failure, its {@code unavailable}
   *     code, with a message naming the blob
   */
  public List<Fetched> blobs(List<Download> downloads) throws KilnException, InterruptedException {
    List<Fetched> out = new ArrayList<>();
    for (Download d : downloads) {
      out.add(new Fetched(d.name(), d.digest(), blob(d)));
    }
    return out;
  }

  private Path blob(Download d) throws KilnException, InterruptedException {
    try {
      var cached = cache.file(d.digest());
      if (cached.isPresent()) {
        return cached.get();
      }
      Path temp = Files.createTempFile(tmp, "download", ".part");
      try {
        try (OutputStream out = Files.newOutputStream(temp)) {
          d.downloader().writeTo(out);
        }
        try (InputStream in = Files.newInputStream(temp)) {
          cache.put(d.digest(), in);
        }
      } finally {
        Files.deleteIfExists(temp);
      }
    } catch (KilnException e) {
      throw e.in("downloading " + d.name() + " failed");
    } catch (IOException e) {
      throw new KilnException(
          d.unavailable(), "downloading " + d.name() + " failed: " + e.getMessage(), e);
    }
    return file(d.digest(), d.name());
  }

  private Path file(Digest digest, String what) throws KilnException, InterruptedException {
    try {
      return cache
          .file(digest)
          .orElseThrow(() -> new IOException(what + " vanished from the cache"));
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMPORT_UNAVAILABLE,
          "reading " + what + " from the artifact cache failed: " + e.getMessage(),
          e);
    }
  }
}
