package dev.kiln.resolver;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.OutputStream;
import java.net.URI;
import java.nio.file.Path;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Real packages from the local mirror pip is configured with (real cp311 manylinux wheels), served
 * over HTTP by the test and read as file:// too, resolved for the probe of Kiln's default base
 * image (CPython 3.11.2, glibc 2.36, x86_64).
 */
class RealPackagesIT {
  static final TargetEnvironment BASE = Targets.defaultBase();
  static List<URI> mirror;

  @TempDir Path cache;

  @BeforeAll
  static void findMirror() throws Exception {
    mirror = PipMirror.fileIndexes();
  }

  private static List<String> names(Lock lock) {
    return lock.packages().stream().map(LockedPackage::name).toList();
  }

  @Test
  void numpyPandasAndHumanizeOverHttpAndFromFiles() throws Exception {
    // "humanize" as the PEP 723 block of a UDF's code would add it (PackagesEndToEndIT).
    List<String> requirements = List.of("numpy", "pandas", "humanize");
    Lock overHttp;
    try (StaticIndexServer http = new StaticIndexServer(mirror);
        PackageResolver resolver =
            new PackageResolver(
                new IndexConfig(
                    http.indexUrls(), Optional.empty(), Optional.empty(), Duration.ofSeconds(60)),
                cache.resolve("http"))) {
      overHttp = resolver.resolve(requirements, BASE);
      // pandas' tree: numpy, python-dateutil and six; tzdata only on Windows/emscripten.
      assertThat(names(overHttp))
          .containsExactly("humanize", "numpy", "pandas", "python-dateutil", "six");
      for (LockedPackage p : overHttp.packages()) {
        assertThat(p.url().getScheme()).isEqualTo("http");
        assertThat(BASE.compatibleTags())
            .as("%s fits the base", p.filename())
            .containsAnyElementsOf(WheelFilename.parse(p.filename()).tags());
        // Every locked file downloads with the locked hash.
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        try (OutputStream out = new DigestOutputStream(OutputStream.nullOutputStream(), sha)) {
          resolver.download(p, out);
        }
        assertThat(HexFormat.of().formatHex(sha.digest())).isEqualTo(p.sha256());
      }
      assertThat(overHttp.packages().get(1).filename())
          .contains("-cp311-cp311-")
          .contains("manylinux");
    }
    try (PackageResolver files =
        new PackageResolver(
            new IndexConfig(mirror, Optional.empty(), Optional.empty(), Duration.ofSeconds(60)),
            cache.resolve("files"))) {
      Lock fromFiles = files.resolve(requirements, BASE);
      assertThat(fromFiles.canonical()).isEqualTo(overHttp.canonical());
      assertThat(fromFiles.packages().get(0).url().getScheme()).isEqualTo("file");
    }
  }

  @Test
  void pinnedRealPackagesResolveAgainWithoutTheIndex() throws Exception {
    Lock first;
    List<String> pins = List.of("humanize==4.16.0", "six==1.17.0");
    try (StaticIndexServer http = new StaticIndexServer(mirror);
        PackageResolver resolver =
            new PackageResolver(
                IndexConfig.of(http.indexUrls().stream().map(URI::toString).toList()), cache)) {
      first = resolver.resolve(pins, BASE);
      assertThat(names(first)).containsExactly("humanize", "six");
      // The server stops here; a new resolver (a restart) still has the lock.
      http.close();
      try (PackageResolver again =
          new PackageResolver(
              IndexConfig.of(http.indexUrls().stream().map(URI::toString).toList()), cache)) {
        assertThat(again.resolve(pins, BASE)).isEqualTo(first);
      }
    }
  }
}
