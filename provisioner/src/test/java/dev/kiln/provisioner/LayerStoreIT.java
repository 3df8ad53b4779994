package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Layer extraction with GNU tar and the kernel's overlayfs (needs root for device nodes and trusted
 * attributes), and concurrent sandbox starts that share layers.
 */
class LayerStoreIT {
  @TempDir Path dir;

  @Test
  void whiteoutsBecomeOverlayMarkersThatHideLowerFiles() throws Exception {
    LayerStore store = new LayerStore(dir.resolve("layers"), "tar");
    SandboxImage.Layer lower =
        new TestImages.LayerBuilder(dir.resolve("src"))
            .file("etc/keep", "keep")
            .file("etc/gone", "gone")
            .file("opt/app/old", "old")
            .file("opt/app/sub/deep", "deep")
            .build("lower");
    SandboxImage.Layer upper =
        new TestImages.LayerBuilder(dir.resolve("src"))
            .whiteout("etc/gone")
            .whiteout("etc/never-existed")
            .opaque("opt/app")
            .file("opt/app/new", "new")
            .build("upper");
    List<Path> dirs = store.extractAll(List.of(lower, upper));
    Path up = dirs.get(1);
    assertThat(up.resolve(".wh.gone")).doesNotExist();
    assertThat(up.resolve("opt/app/.wh..wh..opq")).doesNotExist();
    int mode =
        (Integer)
            Files.getAttribute(
                up.resolve("etc/gone"), "unix:mode", java.nio.file.LinkOption.NOFOLLOW_LINKS);
    assertThat(mode & 0170000).as("character device").isEqualTo(0020000);
    assertThat((Long) Files.getAttribute(up.resolve("etc/gone"), "unix:rdev")).isZero();

    Path sandbox = Files.createDirectories(dir.resolve("sandbox"));
    Path rootfs = RootFs.mount(sandbox, dirs, Files.createDirectories(dir.resolve("empty")));
    try {
      assertThat(rootfs.resolve("etc/keep")).hasContent("keep");
      assertThat(rootfs.resolve("etc/gone")).doesNotExist();
      assertThat(rootfs.resolve("etc/never-existed")).doesNotExist();
      try (var s = Files.list(rootfs.resolve("opt/app"))) {
        assertThat(s.map(p -> p.getFileName().toString())).containsExactly("new");
      }
      assertThatThrownBy(() -> Files.writeString(rootfs.resolve("etc/keep"), "x"))
          .isInstanceOf(IOException.class);
    } finally {
      RootFs.unmount(rootfs);
    }
    assertThat(HostState.mountsUnder(dir)).isEmpty();
  }

  @Test
  void anImageOfOneLayerStillHidesItsWhiteouts() throws Exception {
    LayerStore store = new LayerStore(dir.resolve("layers"), "tar");
    SandboxImage.Layer only =
        new TestImages.LayerBuilder(dir.resolve("src")).file("a", "a").whiteout("b").build("only");
    Path sandbox = Files.createDirectories(dir.resolve("sandbox"));
    Path rootfs =
        RootFs.mount(
            sandbox,
            store.extractAll(List.of(only)),
            Files.createDirectories(dir.resolve("empty")));
    try (var s = Files.list(rootfs)) {
      assertThat(s.map(p -> p.getFileName().toString())).containsExactly("a");
    } finally {
      RootFs.unmount(rootfs);
    }
  }

  @Test
  void plainTarLayersExtractToo() throws Exception {
    Path src = Files.createDirectories(dir.resolve("plain/src/bin"));
    Files.writeString(src.resolve("tool"), "#!/bin/sh\n");
    Files.createSymbolicLink(src.resolveSibling("link"), Path.of("bin/tool"));
    Path blob = dir.resolve("plain/layer.tar");
    TestImages.tar(src.getParent(), "-cf", blob.toString(), ".");
    SandboxImage.Layer layer =
        new SandboxImage.Layer(
            TestImages.digest(blob), "application/vnd.oci.image.layer.v1.tar", blob);
    assertThat(LayerStore.compressionFlags(layer)).isEmpty();
    Path out = new LayerStore(dir.resolve("layers"), "tar").extractAll(List.of(layer)).getFirst();
    assertThat(out.resolve("bin/tool")).hasContent("#!/bin/sh");
    assertThat(Files.readSymbolicLink(out.resolve("link"))).isEqualTo(Path.of("bin/tool"));
  }

  @Test
  void plainAndGzipLayersOfTheSameTreeExtractIdentically() throws Exception {
    TestImages.LayerBuilder tree =
        new TestImages.LayerBuilder(dir.resolve("src"))
            .file("etc/keep", "keep")
            .file("usr/bin/tool", "#!/bin/sh\n", 0755, 0)
            .file("home/app/data", "owned", 0600, 1000)
            .dir("var/empty", 0700, 1000)
            .whiteout("etc/gone")
            .opaque("opt/app")
            .file("opt/app/new", "new");
    SandboxImage.Layer gzip = tree.build("same");
    SandboxImage.Layer plain = tree.buildPlain("same");
    assertThat(LayerStore.compressionFlags(gzip)).containsExactly("-z");
    assertThat(LayerStore.compressionFlags(plain)).isEmpty();
    List<Path> dirs = new LayerStore(dir.resolve("layers"), "tar").extractAll(List.of(gzip, plain));

    assertThat(dirs.get(0)).isNotEqualTo(dirs.get(1));
    String listing = listing(dirs.get(0));
    assertThat(listing)
        .contains("./etc/gone|character special file|", "./usr/bin/tool|regular file|755|0|0|")
        .contains("./home/app/data|regular file|600|1000|1000|");
    assertThat(listing(dirs.get(1))).isEqualTo(listing);

    // Both hide the same files of a layer below.
    SandboxImage.Layer lower =
        new TestImages.LayerBuilder(dir.resolve("src"))
            .file("etc/gone", "gone")
            .file("opt/app/old", "old")
            .build("lower");
    LayerStore store = new LayerStore(dir.resolve("layers"), "tar");
    for (SandboxImage.Layer upper : List.of(gzip, plain)) {
      Path sandbox = Files.createTempDirectory(dir, "sandbox-");
      Path rootfs =
          RootFs.mount(
              sandbox,
              store.extractAll(List.of(lower, upper)),
              Files.createDirectories(dir.resolve("empty")));
      try {
        assertThat(rootfs.resolve("etc/keep")).hasContent("keep");
        assertThat(rootfs.resolve("etc/gone")).doesNotExist();
        try (var s = Files.list(rootfs.resolve("opt/app"))) {
          assertThat(s.map(p -> p.getFileName().toString())).containsExactly("new");
        }
      } finally {
        RootFs.unmount(rootfs);
      }
    }
  }

  /**
   * Every entry of an extracted layer with its type, mode, owner, size, device numbers and content
   * hash (not times: converting whiteouts touches their directories).
   */
  private static String listing(Path layer) throws IOException {
    HostCommand r =
        HostCommand.run(
            List.of(
                "sh",
                "-c",
                "find . -mindepth 1 -print0 | sort -z | xargs -0 stat -c '%n|%F|%a|%u|%g|%s|%t:%T'"
                    + " && find . -type f -print0 | sort -z | xargs -0 sha256sum"),
            layer,
            null,
            Duration.ofMinutes(1));
    assertThat(r.ok()).as(r.diagnostics()).isTrue();
    return r.stdout();
  }

  @Test
  void aBrokenBlobFailsClearlyAndIsRetried() throws Exception {
    Path blob = dir.resolve("broken.tar.gz");
    Files.write(blob, new byte[] {0x1f, (byte) 0x8b, 1, 2, 3, 4});
    SandboxImage.Layer layer =
        new SandboxImage.Layer(TestImages.digest(blob), TestImages.GZIP_LAYER, blob);
    LayerStore store = new LayerStore(dir.resolve("layers"), "tar");
    assertThatThrownBy(() -> store.extractAll(List.of(layer)))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("extracting layer " + layer.digest())
        .hasMessageContaining(blob.toString());
    try (var s = Files.list(dir.resolve("layers"))) {
      assertThat(s).as("no half-extracted layer").isEmpty();
    }
    // Not remembered as failed: a good blob under the same digest extracts.
    Path good = new TestImages.LayerBuilder(dir.resolve("src")).file("x", "x").build("good").blob();
    Files.copy(good, blob, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    assertThat(store.extractAll(List.of(layer)).getFirst().resolve("x")).hasContent("x");
  }

  @Test
  void concurrentStartsSharingLayersExtractEachOnce() throws Exception {
    SandboxImage.Layer base = TestImages.baseLayer();
    SandboxImage.Layer app =
        new TestImages.LayerBuilder(dir.resolve("src")).file("opt/app/id", "app").build("app");
    SandboxImage image =
        TestImages.image(
            List.of(base, app),
            TestImages.python(
                "import sys\nprint(open('/opt/app/id').read(), flush=True)\nsys.stdin.read()"));
    Path work = dir.resolve("provisioner");
    try (RunscProvisioner p =
        RunscProvisioner.builder().workDir(work).startTimeout(Duration.ofSeconds(60)).build()) {
      ExecutorService pool = Executors.newFixedThreadPool(3);
      try {
        List<Callable<Sandbox>> starts = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
          int n = i;
          starts.add(() -> p.start(TestImages.spec("same-" + n, image)));
        }
        List<Sandbox> sandboxes = new ArrayList<>();
        for (Future<Sandbox> f : pool.invokeAll(starts)) {
          sandboxes.add(f.get());
        }
        for (Sandbox s : sandboxes) {
          assertThat(RunscSandbox.readLine(s.init().stdout())).isEqualTo("app");
        }
        assertThat(p.layerExtractions()).isEqualTo(2);
        assertThat(p.sandboxes()).containsExactlyInAnyOrderElementsOf(sandboxes);
        try (var s = Files.list(work.resolve("layers"))) {
          assertThat(s.map(x -> x.getFileName().toString()))
              .containsExactlyInAnyOrder(
                  LayerStore.hex(base.digest()), LayerStore.hex(app.digest()));
        }
      } finally {
        pool.shutdownNow();
      }
    }
    HostState.assertNothingLeft(work, List.of());
  }
}
