package dev.kiln.controlplane;

import dev.kiln.image.BuildImage;
import dev.kiln.image.ImageBuilder;
import dev.kiln.image.ImageLayer;
import dev.kiln.image.RegistryPush;
import dev.kiln.image.Runtimes;
import dev.kiln.image.WheelLayers;
import dev.kiln.provisioner.Provisioner;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Keeps the data directory from only growing: asks each module that owns files there to remove what
 * no running UDF uses and nobody used for {@code --gc-after} — UDF images and their blobs and Jib's
 * layer cache (image-builder), wheel layers (image-builder), extracted layers (provisioner), the
 * compressed layers kept for registry pushes (image-builder, with {@code --registry}) — and forgets
 * the kept definitions of UDFs not asked for since then (Databend asks again at the start of every
 * query that uses one; a definition may hold megabytes of code). The live set is what this server
 * runs; each module also keeps what is in use under its own lock (a build, a starting sandbox), and
 * nothing younger than {@link #GRACE} goes whatever the settings. Over {@code --disk-max}, it
 * collects again with ever shorter cut-offs, least recently used first, down to that grace. A UDF
 * whose image was collected is built again on its next call. Runs on a schedule and on {@code kiln
 * cache gc}; {@link #collect} is serialised.
 */
final class DiskCollector {
  private static final Logger log = LoggerFactory.getLogger(DiskCollector.class);

  /** Nothing written or used more recently than this is collected. */
  static final Duration GRACE = Duration.ofMinutes(10);

  /** What one collection removed (or, dry, would remove). */
  record Report(
      boolean dryRun,
      String cutoff,
      List<String> images,
      int imageFiles,
      long imageBytes,
      int wheelLayers,
      long wheelBytes,
      int extractedLayers,
      long extractedBytes,
      int registryLayers,
      long registryBytes,
      int definitions,
      long definitionBytes,
      long diskBytesBefore,
      long diskBytesAfter) {
    long bytes() {
      return imageBytes + wheelBytes + extractedBytes + registryBytes + definitionBytes;
    }
  }

  private final UdfRegistry registry;
  private final Definitions definitions;
  private final Runtimes runtimes;
  private final WheelLayers wheels;
  private final Provisioner provisioner;
  private final RegistryPush registryPush;
  private final Path data;
  private final Duration gcAfter;
  private final long diskMax;
  private final InstantSource clock;

  DiskCollector(
      UdfRegistry registry,
      Definitions definitions,
      Runtimes runtimes,
      WheelLayers wheels,
      Provisioner provisioner,
      RegistryPush registryPush,
      Path data,
      Duration gcAfter,
      long diskMax,
      InstantSource clock) {
    this.registry = registry;
    this.definitions = definitions;
    this.runtimes = runtimes;
    this.wheels = wheels;
    this.provisioner = provisioner;
    this.registryPush = registryPush;
    this.data = data;
    this.gcAfter = gcAfter.compareTo(GRACE) < 0 ? GRACE : gcAfter;
    this.diskMax = diskMax;
    this.clock = clock;
  }

  /**
   * Removes what is unused since {@code --gc-after}, then, while the data directory is over {@code
   * --disk-max}, what is unused for half as long, and so on down to {@link #GRACE}.
   */
  synchronized Report collect(boolean dryRun) throws IOException {
    long before = total(DiskUsage.measure(data));
    Instant now = clock.instant();
    Duration age = gcAfter;
    Report r = collectOnce(dryRun, now.minus(age), before);
    List<Report> passes = new ArrayList<>(List.of(r));
    while (!dryRun && diskMax > 0 && r.diskBytesAfter() > diskMax && age.compareTo(GRACE) > 0) {
      age = age.dividedBy(2).compareTo(GRACE) < 0 ? GRACE : age.dividedBy(2);
      r = collectOnce(false, now.minus(age), r.diskBytesAfter());
      passes.add(r);
    }
    Report sum = sum(passes, before);
    if (!dryRun && sum.bytes() > 0) {
      log.info(
          "collected {} MiB: {} unused image(s) ({} files), {} wheel layer(s), {} extracted"
              + " layer(s), {} compressed layer(s) for registry pushes; data directory {} -> {}"
              + " MiB",
          sum.bytes() >> 20,
          sum.images().size(),
          sum.imageFiles(),
          sum.wheelLayers(),
          sum.extractedLayers(),
          sum.registryLayers(),
          before >> 20,
          sum.diskBytesAfter() >> 20);
    }
    if (!dryRun && diskMax > 0 && sum.diskBytesAfter() > diskMax) {
      log.warn(
          "the data directory holds {} MiB, over --disk-max {} MiB, with nothing unused for {} min"
              + " left to collect; raise --disk-max or free the disk",
          sum.diskBytesAfter() >> 20,
          diskMax >> 20,
          GRACE.toMinutes());
    }
    return sum;
  }

  private Report collectOnce(boolean dryRun, Instant cutoff, long before) throws IOException {
    Set<String> liveImages = new HashSet<>();
    Set<String> liveLayers = new HashSet<>();
    Set<String> liveUdfs = new HashSet<>();
    Instant now = clock.instant();
    for (UdfResource r : registry.all()) {
      liveUdfs.add(r.tenant.name() + "/" + r.key.hex());
      definitions.used(r.tenant, r.key, now);
      r.provisioned()
          .flatMap(Provisioned::builtImage)
          .ifPresent(
              image -> {
                liveImages.add(BuildImage.imageName(image.key()));
                if (image.image() != null) {
                  for (ImageLayer l : image.image().layers()) {
                    liveLayers.add(l.digest().toString());
                  }
                }
              });
    }
    List<String> images = new ArrayList<>();
    int imageFiles = 0;
    long imageBytes = 0;
    Map<Path, ImageBuilder> layouts = new LinkedHashMap<>();
    for (Runtimes.Runtime rt : runtimes.all()) {
      layouts.putIfAbsent(rt.images().layoutDir(), rt.images());
    }
    for (ImageBuilder b : layouts.values()) {
      ImageBuilder.Collected c =
          b.collect(BuildImage.IMAGE_PREFIX, liveImages::contains, cutoff, dryRun);
      images.addAll(c.images());
      imageFiles += c.files();
      imageBytes += c.bytes();
    }
    WheelLayers.Collected w = wheels.collect(cutoff, dryRun);
    Provisioner.Collected x = provisioner.collect(liveLayers, cutoff, dryRun);
    RegistryPush.Collected g =
        registryPush == null
            ? new RegistryPush.Collected(0, 0)
            : registryPush.collect(cutoff, dryRun);
    Definitions.Collected d =
        definitions.collect(
            (tenant, key) -> liveUdfs.contains(tenant.name() + "/" + key.hex()), cutoff, dryRun);
    // What was removed is known: no second walk of the data directory.
    long removed = imageBytes + w.bytes() + x.bytes() + g.bytes() + d.bytes();
    long after = dryRun ? before : Math.max(0, before - removed);
    return new Report(
        dryRun,
        cutoff.toString(),
        images,
        imageFiles,
        imageBytes,
        w.layers(),
        w.bytes(),
        x.layers(),
        x.bytes(),
        g.layers(),
        g.bytes(),
        d.records(),
        d.bytes(),
        before,
        after);
  }

  private static Report sum(List<Report> passes, long before) {
    Report last = passes.get(passes.size() - 1);
    List<String> images = new ArrayList<>();
    int imageFiles = 0;
    long imageBytes = 0;
    int wheelLayers = 0;
    long wheelBytes = 0;
    int layers = 0;
    long layerBytes = 0;
    int pushLayers = 0;
    long pushBytes = 0;
    int records = 0;
    long recordBytes = 0;
    for (Report r : passes) {
      records += r.definitions();
      recordBytes += r.definitionBytes();
      images.addAll(r.images());
      imageFiles += r.imageFiles();
      imageBytes += r.imageBytes();
      wheelLayers += r.wheelLayers();
      wheelBytes += r.wheelBytes();
      layers += r.extractedLayers();
      layerBytes += r.extractedBytes();
      pushLayers += r.registryLayers();
      pushBytes += r.registryBytes();
    }
    return new Report(
        last.dryRun(),
        last.cutoff(),
        images,
        imageFiles,
        imageBytes,
        wheelLayers,
        wheelBytes,
        layers,
        layerBytes,
        pushLayers,
        pushBytes,
        records,
        recordBytes,
        before,
        last.diskBytesAfter());
  }

  static long total(Map<String, DiskUsage.Use> use) {
    return use.values().stream().mapToLong(DiskUsage.Use::bytes).sum();
  }
}
