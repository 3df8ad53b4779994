package dev.kiln.controlplane;

import dev.kiln.cache.ArtifactCache;
import dev.kiln.cache.Digest;
import dev.kiln.cache.ImportException;
import dev.kiln.image.InstallLayout;
import dev.kiln.image.InvalidWheelException;
import dev.kiln.image.LayerFile;
import dev.kiln.image.LayerSpec;
import dev.kiln.image.WheelLayers;
import dev.kiln.resolver.ContentKey;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.LockedPackage;
import dev.kiln.resolver.PackageResolver;
import dev.kiln.resolver.ResolutionException;
import dev.kiln.resolver.SpecException;
import dev.kiln.resolver.TargetEnvironment;
import dev.kiln.worker.UdfException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What a UDF's image holds beyond its code: its staged imports (fetched through their presigned
 * URLs into the artifact cache, one layer flattened by basename) and its Python packages (resolved
 * to a lock for the base's Python, wheels fetched by sha256 into the artifact cache, one layer per
 * wheel). The image key covers the request key, the lock and the imports' bytes.
 */
final class ImageInputs {
  private static final Logger log = LoggerFactory.getLogger(ImageInputs.class);

  /** Where imports live in the image; the runner puts it on sys.path (databend-wire.md §5). */
  static final String IMPORT_DIR = "/kiln/imports";

  /** The prepared inputs of one UDF image. */
  record Prepared(
      ContentKey imageKey, Lock lock, List<LayerSpec> packageLayers, LayerSpec importsLayer) {}

  private final ArtifactCache cache;
  private final PackageResolver packages;
  private final WheelLayers wheels;
  private final RuntimeProbe probe;
  private final ExecutorService executor;
  private final Path tmp;
  // Layer compression is CPU-bound: one at a time per core.
  private final Semaphore cpu =
      new Semaphore(Math.max(1, Runtime.getRuntime().availableProcessors()));

  ImageInputs(
      ArtifactCache cache,
      PackageResolver packages,
      WheelLayers wheels,
      RuntimeProbe probe,
      ExecutorService executor,
      Path tmp)
      throws IOException {
    this.cache = cache;
    this.packages = packages;
    this.wheels = wheels;
    this.probe = probe;
    this.executor = executor;
    this.tmp = tmp;
    Files.createDirectories(tmp);
  }

  Prepared prepare(UdfResource r) throws StepFailure, InterruptedException {
    List<Digest> importDigests = new ArrayList<>();
    LayerSpec importsLayer = fetchImports(r, importDigests);
    Lock lock = resolvePackages(r);
    List<LayerSpec> packageLayers = packageLayers(r, lock);
    return new Prepared(imageKey(r.key, lock, importDigests), lock, packageLayers, importsLayer);
  }

  /** Fetches every import (a known (tenant, location, tag) is never downloaded again). */
  private LayerSpec fetchImports(UdfResource r, List<Digest> digests)
      throws StepFailure, InterruptedException {
    if (r.request.imports().isEmpty()) {
      return null;
    }
    // One directory, flattened by basename; the last import with a name wins.
    Map<String, LayerFile> byName = new LinkedHashMap<>();
    for (UdfRequest.StagedImport imp : r.request.imports()) {
      Digest digest;
      try {
        digest = cache.imports().fetch(r.tenant, imp.location(), imp.tag(), imp.url());
      } catch (ImportException e) {
        throw new StepFailure(
            e.isPermanent() ? UdfException.Kind.BAD_INPUT : UdfException.Kind.UNAVAILABLE,
            e.isPermanent() ? ErrorCode.IMPORT_FAILED : ErrorCode.IMPORT_UNAVAILABLE,
            e.getMessage(),
            e);
      }
      Path file = cachedFile(digest, "import " + imp.location());
      digests.add(digest);
      String name = basename(imp.location());
      byName.remove(name);
      byName.put(name, LayerFile.ofFile(IMPORT_DIR + "/" + name, file, 0644));
    }
    return new LayerSpec("imports", new ArrayList<>(byName.values()));
  }

  static String basename(String location) {
    String l = location.endsWith("/") ? location.substring(0, location.length() - 1) : location;
    return l.substring(l.lastIndexOf('/') + 1).replaceFirst("^@", "");
  }

  /** The lock for the UDF's requirements on the base's Python (cached by the resolver). */
  private Lock resolvePackages(UdfResource r) throws StepFailure, InterruptedException {
    if (r.request.requirements().isEmpty()) {
      return Lock.empty();
    }
    TargetEnvironment target = target(r);
    try {
      Lock lock = packages.resolve(r.request.requirements(), target);
      log.info(
          "udf {}: {} resolved to {} packages for Python {}",
          r.key.shortForm(),
          r.request.requirements(),
          lock.packages().size(),
          target.pythonVersion());
      return lock;
    } catch (ResolutionException e) {
      boolean external =
          e.reason() == ResolutionException.Reason.INDEX_ERROR
              || e.reason() == ResolutionException.Reason.HASH_MISMATCH;
      throw new StepFailure(
          external ? UdfException.Kind.UNAVAILABLE : UdfException.Kind.LOAD_FAILED,
          external ? ErrorCode.PACKAGE_INDEX_UNAVAILABLE : ErrorCode.PACKAGES_UNRESOLVABLE,
          "the UDF's packages cannot be installed: " + e.getMessage(),
          e);
    } catch (SpecException e) {
      throw new StepFailure(
          UdfException.Kind.LOAD_FAILED,
          ErrorCode.INVALID_SPEC,
          "the UDF's packages cannot be installed: " + e.getMessage(),
          e);
    } catch (IOException e) {
      throw new StepFailure(
          UdfException.Kind.UNAVAILABLE,
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          "the package index could not be read ("
              + e.getMessage()
              + "); retry, or check"
              + " --index-url",
          e);
    }
  }

  private TargetEnvironment target(UdfResource r) throws StepFailure, InterruptedException {
    try {
      return probe.target(r.runtime);
    } catch (InterruptedException e) {
      throw e;
    } catch (Exception e) {
      throw new StepFailure(
          UdfException.Kind.UNAVAILABLE,
          ErrorCode.BASE_IMAGE_UNAVAILABLE,
          "cannot tell which Python the base image "
              + r.runtime.base().reference()
              + " runs: "
              + e.getMessage(),
          e);
    }
  }

  /** One layer per locked wheel, in lock order, built in parallel and cached by the wheel. */
  private List<LayerSpec> packageLayers(UdfResource r, Lock lock)
      throws StepFailure, InterruptedException {
    if (lock.packages().isEmpty()) {
      return List.of();
    }
    TargetEnvironment t = target(r);
    InstallLayout layout =
        new InstallLayout(
            t.purelib(),
            t.platlib(),
            t.scripts(),
            t.data(),
            t.data() + "/include/python" + t.pythonMinor(),
            t.interpreter());
    List<Future<LayerSpec>> futures = new ArrayList<>();
    for (LockedPackage pkg : lock.packages()) {
      futures.add(executor.submit(() -> wheelLayer(pkg, layout)));
    }
    List<LayerSpec> layers = new ArrayList<>();
    try {
      for (Future<LayerSpec> f : futures) {
        layers.add(f.get());
      }
    } catch (ExecutionException e) {
      futures.forEach(f -> f.cancel(true));
      if (e.getCause() instanceof StepFailure sf) {
        throw sf;
      }
      throw new StepFailure(
          UdfException.Kind.INTERNAL,
          ErrorCode.INTERNAL,
          "installing the UDF's packages failed: " + e.getCause(),
          e.getCause());
    }
    return layers;
  }

  private LayerSpec wheelLayer(LockedPackage pkg, InstallLayout layout)
      throws StepFailure, InterruptedException {
    Digest digest = Digest.parse(pkg.sha256());
    Path file = wheelFile(pkg, digest);
    cpu.acquire();
    try {
      return wheels.layerFor(file, pkg.filename(), layout);
    } catch (InvalidWheelException e) {
      throw new StepFailure(
          UdfException.Kind.LOAD_FAILED,
          ErrorCode.PACKAGES_UNRESOLVABLE,
          "the wheel " + pkg.filename() + " cannot be installed: " + e.getMessage(),
          e);
    } catch (IOException e) {
      throw new StepFailure(
          UdfException.Kind.INTERNAL,
          ErrorCode.INTERNAL,
          "installing " + pkg.filename() + " failed: " + e.getMessage(),
          e);
    } finally {
      cpu.release();
    }
  }

  /** The wheel from the artifact cache by its sha256, downloading it (once) when missing. */
  private Path wheelFile(LockedPackage pkg, Digest digest)
      throws StepFailure, InterruptedException {
    try {
      var cached = cache.file(digest);
      if (cached.isPresent()) {
        return cached.get();
      }
      Path temp = Files.createTempFile(tmp, "wheel", ".part");
      try {
        try (OutputStream out = Files.newOutputStream(temp)) {
          packages.download(pkg, out);
        }
        try (InputStream in = Files.newInputStream(temp)) {
          cache.put(digest, in);
        }
      } finally {
        Files.deleteIfExists(temp);
      }
      return cachedFile(digest, "wheel " + pkg.filename());
    } catch (ResolutionException e) {
      throw new StepFailure(
          UdfException.Kind.UNAVAILABLE,
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          "downloading " + pkg.filename() + " failed: " + e.getMessage(),
          e);
    } catch (IOException e) {
      throw new StepFailure(
          UdfException.Kind.UNAVAILABLE,
          ErrorCode.PACKAGE_INDEX_UNAVAILABLE,
          "downloading " + pkg.filename() + " failed: " + e.getMessage(),
          e);
    }
  }

  private Path cachedFile(Digest digest, String what) throws StepFailure, InterruptedException {
    try {
      return cache
          .file(digest)
          .orElseThrow(() -> new IOException(what + " vanished from the cache"));
    } catch (IOException e) {
      throw new StepFailure(
          UdfException.Kind.UNAVAILABLE,
          ErrorCode.IMPORT_UNAVAILABLE,
          "reading " + what + " from the artifact cache failed: " + e.getMessage(),
          e);
    }
  }

  /** sha256 over the request key, the lock and the imports' content, length-prefixed. */
  static ContentKey imageKey(ContentKey requestKey, Lock lock, List<Digest> importDigests) {
    MessageDigest sha = Digest.newSha256();
    for (String part : parts(requestKey, lock, importDigests)) {
      byte[] b = part.getBytes(StandardCharsets.UTF_8);
      sha.update(ByteBuffer.allocate(8).putLong(b.length).array());
      sha.update(b);
    }
    return ContentKey.ofBytes(sha.digest());
  }

  private static List<String> parts(ContentKey key, Lock lock, List<Digest> imports) {
    List<String> parts = new ArrayList<>();
    parts.add("kiln-image-key/v1");
    parts.add(key.hex());
    parts.add(lock.canonical());
    imports.forEach(d -> parts.add(d.toString()));
    return parts;
  }
}
