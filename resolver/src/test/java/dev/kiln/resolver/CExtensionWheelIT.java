package dev.kiln.resolver;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.zip.ZipEntry;
import java.util.zip.ZipInputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A platform wheel with a C extension compiled by gcc during the test: it resolves for a target
 * with the host's CPython ABI and platform, and is refused (naming the tags) for one without.
 */
class CExtensionWheelIT {
  @TempDir Path dir;

  @Test
  void aCompiledWheelResolvesForItsAbiAndNotForOthers() throws Exception {
    WheelBuilder cext = CExtensionWheel.build(dir.resolve("build"), "1.0");
    CExtensionWheel.Host host = CExtensionWheel.host();
    assertThat(cext.filename()).isEqualTo("kiln_cext-1.0-" + host.wheelTag() + ".whl");

    // The wheel really is a working extension: import it with the host Python.
    Path unpacked = unzip(cext.bytes(), dir.resolve("unpacked"));
    Process p =
        new ProcessBuilder(
                "python3",
                "-c",
                "import kiln_cext; print(kiln_cext.add(40, 2), kiln_cext.version())")
            .directory(unpacked.toFile())
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    assertThat(out).isEqualTo("42 1.0");

    TargetEnvironment hostTarget = probeHost();
    try (TestPackageIndex index = TestPackageIndex.start()) {
      index.add(cext).add(WheelBuilder.wheel("uses-cext", "0.1").requires("kiln-cext>=1"));
      try (PackageResolver resolver =
          new PackageResolver(
              IndexConfig.of(List.of(index.url().toString())), dir.resolve("cache"))) {
        Lock lock = resolver.resolve(List.of("uses-cext"), hostTarget);
        assertThat(lock.packages())
            .extracting(LockedPackage::filename)
            .containsExactly(cext.filename(), "uses_cext-0.1-py3-none-any.whl");
        ByteArrayOutputStream wheel = new ByteArrayOutputStream();
        resolver.download(lock.packages().get(0), wheel);
        assertThat(wheel.toByteArray()).isEqualTo(cext.bytes());

        int minor = Integer.parseInt(hostTarget.pythonMinor().split("\\.")[1]);
        TargetEnvironment otherPython =
            new TargetEnvironment(
                "3." + (minor + 1) + ".0",
                "cpython",
                "cpython-3" + (minor + 1) + "-x86_64-linux-gnu",
                hostTarget.machine(),
                "glibc",
                hostTarget.libcVersion(),
                "/p",
                "/p",
                "/b",
                "/d",
                "/i",
                "/usr/bin/python3");
        TargetEnvironment otherMachine = Targets.aarch64();
        for (TargetEnvironment incompatible : List.of(otherPython, otherMachine)) {
          assertThatThrownBy(() -> resolver.resolve(List.of("uses-cext"), incompatible))
              .isInstanceOfSatisfying(
                  KilnException.class,
                  e -> assertThat(e.code()).isEqualTo(ErrorCode.NO_COMPATIBLE_WHEEL))
              .hasMessageContaining("no wheel of 'kiln-cext' can run on the target")
              .hasMessageContaining(cext.filename())
              .hasMessageContaining("Tags tried")
              .hasMessageContaining(incompatible.compatibleTags().get(0));
        }
      }
    }
  }

  private static TargetEnvironment probeHost() throws Exception {
    Process p = new ProcessBuilder("python3", "-I", "-c", TargetEnvironment.probeScript()).start();
    String json = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    return TargetEnvironment.fromProbeJson(json);
  }

  private static Path unzip(byte[] zip, Path to) throws Exception {
    try (ZipInputStream in = new ZipInputStream(new ByteArrayInputStream(zip))) {
      for (ZipEntry e = in.getNextEntry(); e != null; e = in.getNextEntry()) {
        Path target = to.resolve(e.getName()).normalize();
        Files.createDirectories(target.getParent());
        Files.write(target, in.readAllBytes());
      }
    }
    return to;
  }
}
