package dev.kiln.image;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.base.SingleFlight;
import dev.kiln.cache.Digest;
import dev.kiln.cache.FetchInputs;
import dev.kiln.definition.ContentKey;
import dev.kiln.resolver.Lock;
import dev.kiln.resolver.TargetEnvironment;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The provisioning pipeline's image step, and the one place that knows a UDF image's recipe: over
 * the base image, one layer per locked wheel (shared by every image that uses the wheel), each
 * followed by its byte code when the recipe asks for it and it is ready ({@link PycLayers}: a build
 * never waits for a compile, see {@link PycBackground}), then the runner, the staged imports
 * (flattened by basename into {@value #IMPORT_DIR}, the last of a name winning) and the code, so
 * what changes most often sits on top. Built once per image key, or found in the layout from an
 * earlier run.
 *
 * <p>The image key covers the request key, the lock and the imports' bytes, and the byte-code
 * layers it ships, if any: the same UDF with the same packages and the same imports gets the same
 * image, whoever asks; once its packages' byte code is ready, an image with it.
 */
public final class BuildImage {
  private static final Logger log = LoggerFactory.getLogger(BuildImage.class);

  /** The name of every UDF image starts with this; the image key follows. */
  public static final String IMAGE_PREFIX = "kiln/udf:";

  /** Where imports live in the image; the runner puts it on sys.path (databend-wire.md §5). */
  public static final String IMPORT_DIR = "/kiln/imports";

  /**
   * What goes into a UDF's image.
   *
   * @param runtime the base image
   * @param python the base's Python, which the wheels are installed for
   * @param requestKey the content key of what Databend asked for
   * @param handler the handler, for the image's labels
   * @param codeFiles the code layer (path in the image to bytes)
   * @param lock the packages
   * @param wheels the lock's wheel files, in lock order
   * @param imports the staged imports' files, in the UDF's order
   * @param bases compiles the packages' byte code with the base's Python; null for an image without
   *     byte code (a runner then compiles what it imports on every start). The first image with new
   *     packages has none either: their byte code is compiled after, for later builds
   */
  public record Recipe(
      Runtimes.Runtime runtime,
      TargetEnvironment python,
      ContentKey requestKey,
      String handler,
      Map<String, byte[]> codeFiles,
      Lock lock,
      List<FetchInputs.Fetched> wheels,
      List<FetchInputs.Fetched> imports,
      BaseFacts bases) {

    /** A recipe whose packages get no byte code. */
    public Recipe(
        Runtimes.Runtime runtime,
        TargetEnvironment python,
        ContentKey requestKey,
        String handler,
        Map<String, byte[]> codeFiles,
        Lock lock,
        List<FetchInputs.Fetched> wheels,
        List<FetchInputs.Fetched> imports) {
      this(runtime, python, requestKey, handler, codeFiles, lock, wheels, imports, null);
    }

    public Recipe {
      Objects.requireNonNull(runtime, "runtime");
      Objects.requireNonNull(requestKey, "requestKey");
      Objects.requireNonNull(handler, "handler");
      codeFiles = Map.copyOf(codeFiles);
      Objects.requireNonNull(lock, "lock");
      wheels = List.copyOf(wheels);
      imports = List.copyOf(imports);
      if (wheels.size() != lock.packages().size()) {
        throw new IllegalArgumentException(
            "the lock has " + lock.packages().size() + " wheels, " + wheels.size() + " given");
      }
      if (!lock.packages().isEmpty()) {
        Objects.requireNonNull(python, "python");
      }
    }
  }

  /** A UDF's image and its key. */
  public record UdfImage(ContentKey key, BuiltImage image) {}

  private final WheelLayers wheels;
  private final PycLayers pyc;
  private final PycBackground background;
  private final RunnerLayer runner;
  private final ExecutorService executor;
  private final ImageHost host;
  // Not remembered: an image may be collected once unused; the layout says whether it is there.
  private final SingleFlight<ContentKey, BuiltImage> builds = SingleFlight.forgetting();
  // Wheel layers are CPU-bound: one at a time per core.
  private final Semaphore cpu =
      new Semaphore(Math.max(1, Runtime.getRuntime().availableProcessors()));

  /**
   * @param wheels the wheel layers, shared by every image
   * @param runner the runner every image carries
   * @param executor runs wheel layers in parallel
   */
  public BuildImage(WheelLayers wheels, RunnerLayer runner, ExecutorService executor) {
    this(wheels, runner, executor, null);
  }

  /**
   * @param host gets each wheel layer ready as soon as it is built (the local provisioner extracts
   *     it while the other layers and the image are still being made), or null
   */
  public BuildImage(
      WheelLayers wheels, RunnerLayer runner, ExecutorService executor, ImageHost host) {
    this(wheels, runner, executor, host, PycLayers.MIN_SOURCE_BYTES);
  }

  /** minPycSourceBytes: wheels with fewer bytes of Python sources get no byte code. */
  BuildImage(
      WheelLayers wheels,
      RunnerLayer runner,
      ExecutorService executor,
      ImageHost host,
      long minPycSourceBytes) {
    this.wheels = Objects.requireNonNull(wheels, "wheels");
    this.pyc = new PycLayers(wheels, minPycSourceBytes);
    this.background = new PycBackground(pyc, this::wheelLayers);
    this.runner = Objects.requireNonNull(runner, "runner");
    this.executor = Objects.requireNonNull(executor, "executor");
    this.host = host;
  }

  /**
   * The recipe's image, built once per image key.
   *
   * @throws KilnException {@link ErrorCode#PACKAGES_UNRESOLVABLE} for a wheel that cannot be
   *     installed, the builder's errors ({@link ErrorCode#BASE_IMAGE_UNAVAILABLE}, {@link
   *     ErrorCode#IMAGE_BUILD_FAILED}) prefixed with what failed
   */
  public UdfImage build(Recipe recipe) throws KilnException, InterruptedException {
    List<PycLayers.Cached> byteCode;
    UdfImage image;
    // Collection waits while the wheel layers, the byte code, the blobs and the layout are in use.
    DiskLock.LOCK.readLock().lock();
    background.buildStarted();
    try {
      byteCode =
          recipe.bases() == null || recipe.wheels().isEmpty()
              ? List.of()
              : pyc.cached(recipe.wheels(), recipe.python());
      ContentKey key = imageKey(recipe, byteCode);
      image = new UdfImage(key, builds.run(key, () -> buildOrFind(key, recipe, byteCode)));
    } finally {
      background.buildEnded();
      DiskLock.LOCK.readLock().unlock();
    }
    if (host == null || host.compilesByteCode()) {
      background.submit(recipe, byteCode);
    }
    return image;
  }

  /**
   * Background compiles of byte code wait while {@code busy} holds as well as while a build runs:
   * on a small machine a compile would slow down the UDF start it follows (its runners importing).
   */
  public void yieldTo(BooleanSupplier busy) {
    background.yieldTo(Objects.requireNonNull(busy, "busy"));
  }

  /** Waits until the byte code asked for so far is compiled (or failed); false on timeout. */
  public boolean awaitByteCode(Duration timeout) throws InterruptedException {
    return background.awaitIdle(timeout);
  }

  /** The name of the image with this key in the layout. */
  public static String imageName(ContentKey imageKey) {
    return IMAGE_PREFIX + imageKey.hex();
  }

  /**
   * The image of a lock's packages and the runner, without anything of a UDF (no code, no imports):
   * what a sandbox kept ready for the lock's UDFs starts from. Built once per lock and base, and
   * again with the packages' byte code once a UDF's build has had it compiled.
   *
   * @param wheels the lock's wheel files, in lock order
   */
  public UdfImage packagesImage(
      Runtimes.Runtime runtime,
      TargetEnvironment python,
      Lock lock,
      List<FetchInputs.Fetched> wheels)
      throws KilnException, InterruptedException {
    Recipe r = new Recipe(runtime, python, PACKAGES_ONLY, "", Map.of(), lock, wheels, List.of());
    // Collection waits while the wheel layers, the byte code, the blobs and the layout are in use.
    DiskLock.LOCK.readLock().lock();
    try {
      List<PycLayers.Cached> byteCode = wheels.isEmpty() ? List.of() : pyc.cached(wheels, python);
      ContentKey key = packagesKey(lock, byteCode);
      return new UdfImage(key, builds.run(key, () -> buildOrFind(key, r, byteCode)));
    } finally {
      DiskLock.LOCK.readLock().unlock();
    }
  }

  /** Stands for "no UDF" in the recipe of {@link #packagesImage}. */
  private static final ContentKey PACKAGES_ONLY = ContentKey.ofBytes(new byte[32]);

  private BuiltImage buildOrFind(ContentKey key, Recipe r, List<PycLayers.Cached> byteCode)
      throws KilnException, InterruptedException {
    String name = imageName(key);
    ImageBuilder images = r.runtime().images();
    try {
      Optional<BuiltImage> found = images.find(name);
      if (found.isPresent()) {
        return found.get();
      }
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.IMAGE_BUILD_FAILED, "reading the image layout failed: " + e.getMessage(), e);
    }
    boolean udf = r.requestKey() != PACKAGES_ONLY;
    // Package layers first (pre-built blobs), then the runner, the imports and the code.
    List<LayerSpec> layers = new ArrayList<>(packageLayers(r, byteCode));
    layers.add(runner.layer());
    if (!r.imports().isEmpty()) {
      layers.add(importsLayer(r.imports()));
    }
    if (udf) {
      layers.add(LayerSpec.ofFiles("udf-code", r.codeFiles()));
    }
    Map<String, String> env = new TreeMap<>(runner.env());
    env.putAll(udfEnvironment());
    ImageRequest request =
        new ImageRequest(
            name,
            layers,
            runner.initCommand(),
            List.of(),
            env,
            "/",
            udf
                ? Map.of(
                    "dev.kiln.content-key", r.requestKey().hex(),
                    "dev.kiln.image-key", key.hex(),
                    "dev.kiln.handler", r.handler())
                : Map.of("dev.kiln.image-key", key.hex(), "dev.kiln.packages", "only"));
    try {
      return images.build(request);
    } catch (KilnException e) {
      throw e.in(udf ? "building the UDF's image failed" : "building the packages' image failed");
    }
  }

  private static LayerSpec importsLayer(List<FetchInputs.Fetched> imports) {
    return new LayerSpec("imports", importFiles(imports));
  }

  /**
   * The files a UDF's imports become in its image: one directory, {@value #IMPORT_DIR}, flattened
   * by basename; the last import with a name wins. A warm sandbox gets the same files.
   */
  public static List<LayerFile> importFiles(List<FetchInputs.Fetched> imports) {
    Map<String, LayerFile> byName = new LinkedHashMap<>();
    for (FetchInputs.Fetched imp : imports) {
      String name = basename(imp.name());
      byName.remove(name);
      byName.put(name, LayerFile.ofFile(IMPORT_DIR + "/" + name, imp.file(), 0644));
    }
    return new ArrayList<>(byName.values());
  }

  /** The variables a UDF's image sets beyond the runner's; a warm sandbox gets the same. */
  public static Map<String, String> udfEnvironment() {
    return Map.of("KILN_IMPORT_DIR", IMPORT_DIR);
  }

  /** The file name an import gets in {@value #IMPORT_DIR}: the last part of its location. */
  static String basename(String location) {
    String l = location.endsWith("/") ? location.substring(0, location.length() - 1) : location;
    return l.substring(l.lastIndexOf('/') + 1).replaceFirst("^@", "");
  }

  /**
   * One layer per locked wheel, in lock order, built in parallel and cached by the wheel, each
   * followed by its byte code when there is some in {@code byteCode}.
   */
  private List<LayerSpec> packageLayers(Recipe r, List<PycLayers.Cached> byteCode)
      throws KilnException, InterruptedException {
    List<LayerSpec> layers = wheelLayers(r);
    if (byteCode.isEmpty()) {
      return layers;
    }
    List<LayerSpec> out = new ArrayList<>();
    for (int i = 0; i < layers.size(); i++) {
      out.add(layers.get(i));
      LayerBlob pycLayer = byteCode.get(i).layer();
      if (pycLayer != null) {
        out.add(LayerSpec.ofBlob(PycLayers.name(layers.get(i)), pycLayer));
      }
    }
    return out;
  }

  private List<LayerSpec> wheelLayers(Recipe r) throws KilnException, InterruptedException {
    if (r.wheels().isEmpty()) {
      return List.of();
    }
    InstallLayout layout = InstallLayout.of(r.python());
    List<Future<LayerSpec>> futures = new ArrayList<>();
    for (FetchInputs.Fetched wheel : r.wheels()) {
      futures.add(executor.submit(() -> wheelLayer(wheel, layout)));
    }
    List<LayerSpec> layers = new ArrayList<>();
    try {
      for (Future<LayerSpec> f : futures) {
        layers.add(f.get());
      }
    } catch (ExecutionException e) {
      futures.forEach(f -> f.cancel(true));
      if (e.getCause() instanceof KilnException k) {
        throw k;
      }
      throw new KilnException(
          ErrorCode.INTERNAL,
          "installing the UDF's packages failed: " + e.getCause(),
          e.getCause());
    }
    return layers;
  }

  private LayerSpec wheelLayer(FetchInputs.Fetched wheel, InstallLayout layout)
      throws KilnException, InterruptedException {
    cpu.acquire();
    try {
      LayerSpec layer = wheels.layerFor(wheel.file(), wheel.name(), layout);
      prepareAhead(layer.blob());
      return layer;
    } catch (KilnException e) {
      throw e.in("the wheel " + wheel.name() + " cannot be installed");
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.INTERNAL, "installing " + wheel.name() + " failed: " + e.getMessage(), e);
    } finally {
      cpu.release();
    }
  }

  /**
   * Hands a built layer to the host in the background. A failure only loses the head start: the
   * sandbox step gets the layer ready again and reports what fails.
   */
  private void prepareAhead(LayerBlob blob) {
    if (host == null || blob == null) {
      return;
    }
    ImageLayer layer =
        new ImageLayer(blob.digest(), blob.diffId(), blob.mediaType(), blob.size(), blob.file());
    Thread.ofVirtual()
        .name("kiln-layer-ahead")
        .start(
            () -> {
              try {
                host.prepareLayer(layer);
              } catch (IOException | RuntimeException e) {
                log.debug("getting layer {} ready ahead failed: {}", blob.digest(), e.toString());
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            });
  }

  /**
   * sha256 over the request key, the lock, the imports' content and the byte-code layers shipped
   * (which wheel's, their digests), length-prefixed. Without byte code, the key of an image without
   * it (as before byte code existed).
   */
  static ContentKey imageKey(Recipe r, List<PycLayers.Cached> byteCode) {
    List<String> parts = new ArrayList<>();
    parts.add("kiln-image-key/v1");
    parts.add(r.requestKey().hex());
    parts.add(r.lock().canonical());
    r.imports().forEach(i -> parts.add(i.digest().toString()));
    addByteCode(parts, byteCode);
    return sha256(parts);
  }

  /** The byte-code layers an image ships (which wheel's, their digests), when it ships any. */
  private static void addByteCode(List<String> parts, List<PycLayers.Cached> byteCode) {
    if (byteCode.stream().anyMatch(c -> c.layer() != null)) {
      parts.add(PycLayers.FORMAT);
      for (int i = 0; i < byteCode.size(); i++) {
        LayerBlob layer = byteCode.get(i).layer();
        if (layer != null) {
          parts.add(i + " " + layer.digest());
        }
      }
    }
  }

  /**
   * What the zygotes of a lock are kept by: sha256 over the lock, length-prefixed (the same lock
   * with or without byte code is the same package set).
   */
  public static ContentKey packagesKey(Lock lock) {
    return sha256(List.of("kiln-packages-image/v1", lock.canonical()));
  }

  /** The key of {@link #packagesImage}: the lock and the byte-code layers it ships. */
  private static ContentKey packagesKey(Lock lock, List<PycLayers.Cached> byteCode) {
    List<String> parts = new ArrayList<>(List.of("kiln-packages-image/v1", lock.canonical()));
    addByteCode(parts, byteCode);
    return sha256(parts);
  }

  private static ContentKey sha256(List<String> parts) {
    MessageDigest sha = Digest.newSha256();
    for (String part : parts) {
      byte[] b = part.getBytes(StandardCharsets.UTF_8);
      sha.update(ByteBuffer.allocate(8).putLong(b.length).array());
      sha.update(b);
    }
    return ContentKey.ofBytes(sha.digest());
  }
}
