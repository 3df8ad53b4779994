package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The modules a wheel installs at the top of site-packages, as a UDF would import them. */
class WheelModulesTest {
  @TempDir Path dir;

  private Path wheel(String... entries) throws IOException {
    Path w = dir.resolve("x-1.0-py3-none-any.whl");
    try (OutputStream out = Files.newOutputStream(w);
        ZipOutputStream zip = new ZipOutputStream(out)) {
      for (String e : entries) {
        zip.putNextEntry(new ZipEntry(e));
        zip.closeEntry();
      }
    }
    return w;
  }

  @Test
  void packagesModulesAndExtensionsButNotPrivateTestsOrMetadata() throws IOException {
    Path w =
        wheel(
            "numpy/__init__.py",
            "numpy/core/__init__.py",
            "numpy.libs/libopenblas.so",
            "six.py",
            "_cffi_backend.cpython-311-x86_64-linux-gnu.so",
            "fastjson.cpython-311-x86_64-linux-gnu.so",
            "tests/__init__.py",
            "nspkg/module.py",
            "x-1.0.dist-info/RECORD",
            "x-1.0.data/scripts/tool.py",
            "README.txt");
    assertThat(WheelModules.topLevel(w)).containsExactly("fastjson", "numpy", "six");
  }
}
