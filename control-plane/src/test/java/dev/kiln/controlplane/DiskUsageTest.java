package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Disk use by kind: every file under the data directory is counted once, under its owner. */
class DiskUsageTest {
  @TempDir Path data;

  private Path file(String rel, int bytes) throws Exception {
    Path p = data.resolve(rel);
    Files.createDirectories(p.getParent());
    return Files.write(p, new byte[bytes]);
  }

  @Test
  void eachFileCountsOnceUnderItsOwnerAndMountedRootFileSystemsAreNotWalked() throws Exception {
    file("images/oci/blobs/sha256/aa", 100);
    file("images/oci/index.json", 10);
    file("images/jib/application/layers/x", 7);
    file("provisioner/layers/abc/usr/bin/python3", 1000);
    file("provisioner/sandboxes/kiln-x/config.json", 5);
    file("provisioner/sandboxes/kiln-x/rootfs/usr/bin/python3", 1000); // the overlay's view
    file("wheel-layers/k.tar.gz", 50);
    file("registry-layers/k.tar.gz", 40);
    file("cache/blobs/ab/cd", 20);
    file("definitions/acme/k.json", 3);
    file("token-secret", 32);
    file("tmp/x", 1);
    var use = DiskUsage.measure(data);
    assertThat(use.get("images")).isEqualTo(new DiskUsage.Use(110, 2));
    assertThat(use.get("jib-caches")).isEqualTo(new DiskUsage.Use(7, 1));
    assertThat(use.get("extracted-layers")).isEqualTo(new DiskUsage.Use(1000, 1));
    assertThat(use.get("sandboxes")).isEqualTo(new DiskUsage.Use(5, 1));
    assertThat(use.get("wheel-layers")).isEqualTo(new DiskUsage.Use(50, 1));
    assertThat(use.get("registry-layers")).isEqualTo(new DiskUsage.Use(40, 1));
    assertThat(use.get("blob-cache")).isEqualTo(new DiskUsage.Use(20, 1));
    assertThat(use.get("records")).isEqualTo(new DiskUsage.Use(35, 2));
    assertThat(use.get("temporary")).isEqualTo(new DiskUsage.Use(1, 1));
    assertThat(use).doesNotContainKey("other");
  }

  @Test
  void aFileLinkedUnderTwoNamesTakesItsBytesOnce() throws Exception {
    Path layer = file("wheel-layers/k.tar", 500);
    Path blob = data.resolve("images/oci/blobs/sha256/bb");
    Files.createDirectories(blob.getParent());
    Files.createLink(blob, layer);
    var use = DiskUsage.measure(data);
    assertThat(use.get("images").bytes() + use.get("wheel-layers").bytes()).isEqualTo(500);
    assertThat(use.get("images").files() + use.get("wheel-layers").files()).isEqualTo(2);
  }
}
