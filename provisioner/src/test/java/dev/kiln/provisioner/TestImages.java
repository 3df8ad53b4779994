package dev.kiln.provisioner;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;

/**
 * Images for sandbox tests: the Python base image's layer (from the archive that {@code
 * bin/build-base-image} writes) plus small layers made here with GNU tar.
 */
final class TestImages {
  static final String GZIP_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip";
  static final String PLAIN_LAYER = "application/vnd.oci.image.layer.v1.tar";
  static final List<String> BASE_ENV =
      List.of(
          "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "LANG=C.UTF-8",
          "PYTHONDONTWRITEBYTECODE=1");

  /** An init that signals readiness, then echoes stdin upper-cased line by line until EOF. */
  static final List<String> ECHO_INIT =
      List.of(
          "/usr/bin/python3",
          "-c",
          "import sys\n"
              + "print('ready', flush=True)\n"
              + "for line in sys.stdin:\n"
              + "    sys.stdout.write(line.upper()); sys.stdout.flush()\n");

  private static SandboxImage.Layer base;

  private TestImages() {}

  /** The base image archive: {@code KILN_BASE_IMAGE} (property or env) or the default path. */
  static Path baseArchive() {
    String configured = System.getProperty("KILN_BASE_IMAGE", System.getenv("KILN_BASE_IMAGE"));
    Path archive;
    if (configured != null && !configured.isBlank()) {
      archive = Path.of(configured);
    } else {
      String cache = System.getenv("KILN_CACHE_DIR");
      Path cacheDir =
          cache != null && !cache.isBlank()
              ? Path.of(cache)
              : Path.of(System.getProperty("user.home"), ".cache", "kiln");
      archive = cacheDir.resolve("base").resolve("debian-bookworm-python3.tar");
    }
    if (!Files.isRegularFile(archive)) {
      throw new IllegalStateException(
          "the Python base image archive "
              + archive
              + " is missing: run bin/build-base-image (as root), or point KILN_BASE_IMAGE at"
              + " another docker-save archive");
    }
    return archive;
  }

  /** The base image's only layer, unpacked once per JVM from the archive. */
  static synchronized SandboxImage.Layer baseLayer() throws IOException {
    if (base == null) {
      Path archive = baseArchive();
      Path dir = Files.createDirectories(Path.of("target", "test-base-image")).toAbsolutePath();
      tar(dir, "-xf", archive.toString(), "-C", dir.toString());
      JsonNode manifest = new ObjectMapper().readTree(dir.resolve("manifest.json").toFile());
      JsonNode layers = manifest.get(0).get("Layers");
      if (layers.size() != 1) {
        throw new IllegalStateException(archive + " has " + layers.size() + " layers; expected 1");
      }
      String name = layers.get(0).asText();
      Path blob = dir.resolve(name);
      base = new SandboxImage.Layer(digest(blob), GZIP_LAYER, blob);
    }
    return base;
  }

  static SandboxImage image(List<SandboxImage.Layer> layers, List<String> argv) {
    return new SandboxImage(layers, argv, BASE_ENV, "/");
  }

  static SandboxSpec spec(String name, SandboxImage image) {
    return new SandboxSpec(name, image, new Limits(512L << 20, 1), List.of());
  }

  /** A Python init: prints {@code ready}, then runs {@code code}. */
  static List<String> python(String code) {
    return List.of("/usr/bin/python3", "-c", "print('ready', flush=True)\n" + code);
  }

  static String digest(Path file) throws IOException {
    try (InputStream in = Files.newInputStream(file)) {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      byte[] buf = new byte[1 << 16];
      for (int n; (n = in.read(buf)) > 0; ) {
        md.update(buf, 0, n);
      }
      return "sha256:" + HexFormat.of().formatHex(md.digest());
    } catch (NoSuchAlgorithmException e) {
      throw new AssertionError(e);
    }
  }

  /** Reads one line of a process's stdout (without its newline), byte by byte: nothing more. */
  static String readLine(SandboxProcess p) throws IOException {
    java.io.ByteArrayOutputStream line = new java.io.ByteArrayOutputStream();
    for (int b = p.stdout().read(); b != '\n'; b = p.stdout().read()) {
      if (b < 0) {
        throw new IOException("the process's output ended before a line: " + line);
      }
      line.write(b);
    }
    return line.toString(java.nio.charset.StandardCharsets.UTF_8);
  }

  /** Reads all of a process's stdout as UTF-8, after it ends. */
  static String readAll(SandboxProcess p) throws IOException {
    return new String(p.stdout().readAllBytes(), StandardCharsets.UTF_8);
  }

  static void tar(Path cwd, String... args) throws IOException {
    List<String> argv = new ArrayList<>();
    argv.add("tar");
    argv.addAll(List.of(args));
    HostCommand r = HostCommand.run(argv, cwd, null, Duration.ofMinutes(2));
    if (!r.ok()) {
      throw new IOException(String.join(" ", argv) + " failed: " + r.diagnostics());
    }
  }

  /** Builds a gzip layer from files, directories and whiteouts, the way an image builder would. */
  static final class LayerBuilder {
    private final Path root;

    LayerBuilder(Path scratch) throws IOException {
      this.root = Files.createTempDirectory(Files.createDirectories(scratch), "layer-");
      // The layer's "." entry becomes the sandbox's "/": it must be traversable by everyone.
      Files.setAttribute(root, "unix:mode", 0755);
    }

    LayerBuilder file(String path, String content) throws IOException {
      return file(path, content, 0644, 0);
    }

    LayerBuilder file(String path, String content, int mode, int owner) throws IOException {
      Path p = root.resolve(path);
      Files.createDirectories(p.getParent());
      Files.writeString(p, content);
      Files.setAttribute(p, "unix:mode", mode);
      Files.setAttribute(p, "unix:uid", owner);
      Files.setAttribute(p, "unix:gid", owner);
      return this;
    }

    LayerBuilder dir(String path, int mode, int owner) throws IOException {
      Path p = Files.createDirectories(root.resolve(path));
      Files.setAttribute(p, "unix:mode", mode);
      Files.setAttribute(p, "unix:uid", owner);
      Files.setAttribute(p, "unix:gid", owner);
      return this;
    }

    /** Deletes {@code path} of the layers below (an OCI whiteout file). */
    LayerBuilder whiteout(String path) throws IOException {
      Path p = root.resolve(path);
      Files.createDirectories(p.getParent());
      Files.createFile(p.resolveSibling(Whiteouts.PREFIX + p.getFileName()));
      return this;
    }

    /** Hides everything the layers below have in directory {@code path}. */
    LayerBuilder opaque(String path) throws IOException {
      Path d = Files.createDirectories(root.resolve(path));
      Files.createFile(d.resolve(Whiteouts.OPAQUE));
      return this;
    }

    /** Writes {@code <name>.tar} (uncompressed) next to the tree and returns it as a layer. */
    SandboxImage.Layer buildPlain(String name) throws IOException {
      Path blob = root.resolveSibling(name + "-" + root.getFileName() + ".tar");
      tar(root, "--sort=name", "--numeric-owner", "-cf", blob.toString(), ".");
      return new SandboxImage.Layer(digest(blob), PLAIN_LAYER, blob);
    }

    /** Writes {@code <name>.tar.gz} next to the tree and returns it as a layer. */
    SandboxImage.Layer build(String name) throws IOException {
      Path blob = root.resolveSibling(name + "-" + root.getFileName() + ".tar.gz");
      tar(root, "--sort=name", "--numeric-owner", "-czf", blob.toString(), ".");
      return new SandboxImage.Layer(digest(blob), GZIP_LAYER, blob);
    }
  }
}
