package dev.kiln.image;

import com.google.cloud.tools.jib.api.Credential;
import com.google.cloud.tools.jib.api.DescriptorDigest;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.api.InvalidImageReferenceException;
import com.google.cloud.tools.jib.api.RegistryException;
import com.google.cloud.tools.jib.api.RegistryUnauthorizedException;
import com.google.cloud.tools.jib.blob.Blobs;
import com.google.cloud.tools.jib.http.FailoverHttpClient;
import com.google.cloud.tools.jib.image.json.OciManifestTemplate;
import com.google.cloud.tools.jib.registry.RegistryClient;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.cache.Digest;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Pushes an image of the local OCI layout to an OCI registry, for sandboxes that run elsewhere (a
 * Kubernetes node pulls it by digest). The layout keeps layers uncompressed for the local
 * provisioner, which extracts them itself; a registry gets them gzip-compressed, each compressed
 * once and kept by its diff id, so the digest of a layer's compressed blob stays the same from push
 * to push and a registry that has it is not sent it again. Only blobs the registry lacks are sent;
 * the manifest goes last, under the tag.
 *
 * <p>The registry protocol (blob checks, chunked uploads, bearer tokens, the http fallback for
 * insecure registries) is Jib's registry client's, as for base images ({@link RegistryManifests}).
 */
public final class RegistryPush implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RegistryPush.class);

  private final Path compressed;
  private final int gzipLevel;
  private final FailoverHttpClient http;
  private final FailoverHttpClient localHttp;
  private final RegistryLogins logins;
  private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
  private final ExecutorService workers =
      Executors.newFixedThreadPool(
          Math.max(2, Runtime.getRuntime().availableProcessors()),
          Thread.ofPlatform().daemon().name("kiln-push-", 0).factory());

  /** What a push did. */
  public record Pushed(
      String reference, Digest manifestDigest, int blobsSent, int blobsPresent, long bytesSent) {}

  /**
   * @param compressedDir where compressed layers are kept, by diff id
   * @param gzipLevel gzip level of the compressed layers, 1 (fastest) to 9
   * @param allowInsecure whether a registry may be spoken to over plain http
   * @param logins how to log in to a registry
   */
  public RegistryPush(
      Path compressedDir, int gzipLevel, boolean allowInsecure, RegistryLogins logins)
      throws IOException {
    if (gzipLevel < 1 || gzipLevel > 9) {
      throw new IllegalArgumentException("gzip level must be 1 to 9, got " + gzipLevel);
    }
    this.compressed = Files.createDirectories(compressedDir);
    this.gzipLevel = gzipLevel;
    this.logins = logins;
    this.http = RegistryManifests.httpClient(allowInsecure, false);
    // A login goes over plain http only to a registry on this machine.
    this.localHttp = RegistryManifests.httpClient(allowInsecure, true);
  }

  /** Pushes anonymously (or with the Docker config's login: see {@link RegistryLogins}). */
  public RegistryPush(Path compressedDir, int gzipLevel, boolean allowInsecure) throws IOException {
    this(
        compressedDir,
        gzipLevel,
        allowInsecure,
        RegistryLogins.dockerConfig(RegistryLogins.defaultDockerConfig()));
  }

  /**
   * Pushes {@code image} (whose config is the file {@code config}: {@link ImageBuilder#configBlob})
   * to {@code target} ({@code registry/repository:tag}).
   *
   * @throws IllegalArgumentException for a malformed target (the registry setting's)
   * @throws KilnException REGISTRY_UNAVAILABLE when the registry cannot be reached or refuses the
   *     push, IMAGE_BUILD_FAILED when a layer cannot be read or compressed
   */
  public Pushed push(BuiltImage image, Path config, String target)
      throws KilnException, InterruptedException {
    // A push reads the compressed layers it makes or finds: collect() waits for it.
    lock.readLock().lock();
    try {
      return pushLocked(image, config, target);
    } finally {
      lock.readLock().unlock();
    }
  }

  /** What {@link #collect} removed (or, dry, would remove). */
  public record Collected(int layers, long bytes) {}

  /**
   * Removes the compressed layers no push used since {@code unusedBefore} (a registry that lacks
   * one later gets it compressed again); with {@code dryRun}, only counts them.
   */
  public Collected collect(Instant unusedBefore, boolean dryRun) throws IOException {
    lock.writeLock().lock();
    try (DirectoryStream<Path> files = Files.newDirectoryStream(compressed, "*.tar.gz")) {
      int n = 0;
      long bytes = 0;
      for (Path f : files) {
        if (!Files.getLastModifiedTime(f).toInstant().isBefore(unusedBefore)) {
          continue;
        }
        Path digest = f.resolveSibling(f.getFileName() + ".sha256");
        n++;
        bytes += Files.size(f) + (Files.exists(digest) ? Files.size(digest) : 0);
        if (!dryRun) {
          Files.deleteIfExists(digest); // first: a layer without its digest is made again
          Files.deleteIfExists(f);
        }
      }
      return new Collected(n, bytes);
    } finally {
      lock.writeLock().unlock();
    }
  }

  private Pushed pushLocked(BuiltImage image, Path config, String target)
      throws KilnException, InterruptedException {
    ImageReference ref;
    try {
      ref = ImageReference.parse(target);
    } catch (InvalidImageReferenceException e) {
      throw new IllegalArgumentException(
          "'" + target + "' is not an image reference; give REGISTRY/REPOSITORY:TAG", e);
    }
    AtomicInteger sent = new AtomicInteger();
    AtomicInteger present = new AtomicInteger();
    AtomicLong bytes = new AtomicLong();
    List<Future<Blob>> layers = new ArrayList<>();
    try {
      Credential login = logins.forImage(ref).orElse(null);
      RegistryClient client =
          RegistryManifests.registryClient(
              ref, onThisMachine(ref.getRegistry()) ? localHttp : http, login);
      if (!client.doPushBearerAuth() && login != null) {
        client.configureBasicAuth(); // a registry that asks for Basic (docker-registry htpasswd)
      }
      // Each layer compressed (when it is not) and sent if missing, several at once: gzip is the
      // cost of a first push, and one thread compresses one layer.
      for (ImageLayer layer : image.layers()) {
        layers.add(
            workers.submit(
                () -> {
                  Blob blob = gzipped(layer);
                  send(client, blob.digest(), blob.file(), sent, present, bytes);
                  return blob;
                }));
      }
      OciManifestTemplate manifest = new OciManifestTemplate();
      for (Future<Blob> f : layers) {
        Blob blob = await(f);
        manifest.addLayer(blob.size(), DescriptorDigest.fromDigest(blob.digest().toString()));
      }
      long configSize = Files.size(config);
      manifest.setContainerConfiguration(
          configSize, DescriptorDigest.fromDigest(image.configDigest().toString()));
      send(client, image.configDigest(), config, sent, present, bytes);
      DescriptorDigest manifestDigest = client.pushManifest(manifest, ref.getQualifier());
      return new Pushed(
          ref.getRegistry() + "/" + ref.getRepository() + "@" + manifestDigest,
          Digest.parse(manifestDigest.toString()),
          sent.get(),
          present.get(),
          bytes.get());
    } catch (RegistryException | IOException e) {
      if (e instanceof IOException && Thread.currentThread().isInterrupted()) {
        throw new InterruptedException("interrupted while pushing to " + target);
      }
      throw new KilnException(
          ErrorCode.REGISTRY_UNAVAILABLE,
          "pushing image "
              + image.name()
              + " to "
              + target
              + " failed: "
              + e.getMessage()
              + (refusedLogin(e)
                  ? "; the registry wants a login Kiln lacks or refuses the one it sent ("
                      + logins
                      + "): run docker login "
                      + ref.getRegistry()
                      + " as Kiln's user, or pass --registry-username and"
                      + " --registry-password-file"
                  : "; check that the registry is up and accepts pushes (--registry), and retry"),
          e);
    } catch (java.security.DigestException e) {
      throw new KilnException(ErrorCode.INTERNAL, "a digest of the layout is malformed", e);
    } finally {
      layers.forEach(f -> f.cancel(true)); // what a failure left running
    }
  }

  /** Whether the registry said 401 or 403 somewhere in {@code e}'s causes. */
  private static boolean refusedLogin(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof RegistryUnauthorizedException
          || String.valueOf(t.getMessage()).contains("401")
          || String.valueOf(t.getMessage()).contains("403 Forbidden")) {
        return true;
      }
    }
    return false;
  }

  /** Whether {@code registry} ({@code HOST[:PORT]}) is a loopback address of this machine. */
  static boolean onThisMachine(String registry) {
    String host =
        registry.startsWith("[")
            ? registry.substring(1, registry.indexOf(']'))
            : registry.contains(":") ? registry.substring(0, registry.lastIndexOf(':')) : registry;
    return host.equals("localhost") || host.startsWith("127.") || host.equals("::1");
  }

  /** Sends a blob unless the registry has it; counts which it was. */
  private static void send(
      RegistryClient client,
      Digest digest,
      Path file,
      AtomicInteger sent,
      AtomicInteger present,
      AtomicLong bytes)
      throws IOException, RegistryException, java.security.DigestException {
    DescriptorDigest d = DescriptorDigest.fromDigest(digest.toString());
    if (client.checkBlob(d).isPresent()) {
      present.incrementAndGet();
      return;
    }
    client.pushBlob(d, Blobs.from(file), null, bytes::addAndGet);
    sent.incrementAndGet();
  }

  /** A layer task's blob; its failure as the push's. */
  private static Blob await(Future<Blob> f)
      throws IOException, RegistryException, KilnException, InterruptedException {
    try {
      return f.get();
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof KilnException k) {
        throw k;
      }
      if (cause instanceof RegistryException r) {
        throw r;
      }
      if (cause instanceof IOException io) {
        throw io;
      }
      throw new IOException(cause.toString(), cause);
    }
  }

  /** A layer's compressed blob and its digest. */
  private record Blob(Path file, Digest digest, long size) {}

  /**
   * The layer as a registry gets it: as it is when the layout holds it compressed, else gzipped
   * once into {@code compressedDir} (named by its diff id, with its digest beside it) and reused.
   */
  private Blob gzipped(ImageLayer layer) throws KilnException {
    if (layer.mediaType().endsWith("+gzip")) {
      return new Blob(layer.blob(), layer.digest(), layer.size());
    }
    String name = layer.diffId().hex() + ".tar.gz";
    Path file = compressed.resolve(name);
    Path digestFile = compressed.resolve(name + ".sha256");
    try {
      if (Files.exists(digestFile) && Files.exists(file)) {
        // Used now: collect() goes by this time.
        Files.setLastModifiedTime(file, FileTime.from(Instant.now()));
        return new Blob(
            file,
            Digest.parse(Files.readString(digestFile, StandardCharsets.US_ASCII).strip()),
            Files.size(file));
      }
      Path temp = compressed.resolve("tmp-" + UUID.randomUUID());
      MessageDigest sha = MessageDigest.getInstance("SHA-256");
      try {
        try (InputStream in = Files.newInputStream(layer.blob());
            OutputStream out =
                new Gzip(
                    new DigestOutputStream(
                        new BufferedOutputStream(Files.newOutputStream(temp), 1 << 16), sha),
                    gzipLevel)) {
          in.transferTo(out);
        }
        Digest digest = Digest.parse("sha256:" + HexFormat.of().formatHex(sha.digest()));
        Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        Path digestTemp = compressed.resolve("tmp-" + UUID.randomUUID());
        Files.writeString(digestTemp, digest + "\n", StandardCharsets.US_ASCII);
        Files.move(
            digestTemp,
            digestFile,
            StandardCopyOption.ATOMIC_MOVE,
            StandardCopyOption.REPLACE_EXISTING);
        return new Blob(file, digest, Files.size(file));
      } finally {
        Files.deleteIfExists(temp);
      }
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED,
          "compressing layer "
              + layer.diffId()
              + " for the registry failed: "
              + e.getMessage()
              + "; check the disk under "
              + compressed,
          e);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("no SHA-256 in this JVM", e);
    }
  }

  @Override
  public void close() {
    workers.shutdownNow();
    try {
      http.shutDown();
      localHttp.shutDown();
    } catch (IOException e) {
      log.debug("closing the registry connections failed", e);
    }
  }
}
