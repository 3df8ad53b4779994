package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.cache.Digest;
import java.io.InputStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.GZIPInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Pushes images of the local layout to a real OCI registry (Debian's docker-registry). */
class RegistryPushIT {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final byte[] LIBRARY = ImageBuilderTest.randomBytes(200_000, 7);

  @TempDir Path tmp;

  /** GETs a registry path (plain http on loopback), with the OCI manifest type accepted. */
  private static HttpResponse<InputStream> get(LocalRegistry registry, String path)
      throws Exception {
    return HttpClient.newHttpClient()
        .send(
            HttpRequest.newBuilder(URI.create("http://localhost:" + registry.port() + path))
                .header("Accept", OciLayout.MANIFEST_MEDIA_TYPE)
                .build(),
            HttpResponse.BodyHandlers.ofInputStream());
  }

  private static final String CODE = "def f(x):\n  return x\n";

  /**
   * {@code request} with a package layer first, built as a plain tar as the server's wheel layers
   * are (the layout keeps them uncompressed).
   */
  private ImageRequest withPackage(ImageRequest request) throws Exception {
    Path tar = tmp.resolve("package.tar");
    if (!Files.exists(tar)) {
      byte[] module = "VALUE = 42\n".getBytes(StandardCharsets.UTF_8);
      try (TarArchiveOutputStream out = new TarArchiveOutputStream(Files.newOutputStream(tar))) {
        TarArchiveEntry entry = TarEntries.header("site-packages/pkg.py", 0644, module.length);
        out.putArchiveEntry(entry);
        out.write(module);
        out.closeArchiveEntry();
      }
    }
    Digest digest;
    try (InputStream in = Files.newInputStream(tar)) {
      digest = Digest.of(in);
    }
    List<LayerSpec> layers = new ArrayList<>();
    layers.add(LayerSpec.ofBlob("package", new LayerBlob(tar, digest, digest, Files.size(tar))));
    layers.addAll(request.layers());
    return new ImageRequest(
        request.name(),
        layers,
        request.entrypoint(),
        request.cmd(),
        request.env(),
        request.workingDir(),
        request.labels());
  }

  @Test
  void aRegistryThatAsksForALoginGetsTheOneGivenOrTheDockerConfigs() throws Exception {
    BaseImage base = BaseImage.parse(TestImages.baseArchive().toString());
    try (ImageBuilder images = new ImageBuilder(base, tmp.resolve("images"));
        LocalRegistry registry =
            LocalRegistry.startWithLogin(tmp.resolve("registry"), "kiln", "s3cret-pass")) {
      BuiltImage image = images.build(TestImages.udf("kiln/udf:a", LIBRARY, CODE));
      Path config = images.configBlob(image);
      String host = "localhost:" + registry.port();
      String repo = host + "/kiln/udf";
      int blobs = image.layers().size() + 1;

      // No login, or a wrong one: refused, and the error says how to give one, never a password.
      for (RegistryLogins wrong :
          List.of(
              RegistryLogins.dockerConfig(tmp.resolve("nowhere/config.json")),
              RegistryLogins.given(host, "kiln", "not-it"))) {
        try (RegistryPush push = new RegistryPush(tmp.resolve("c0"), 1, true, wrong)) {
          assertThatThrownBy(() -> push.push(image, config, repo + ":a"))
              .isInstanceOfSatisfying(
                  KilnException.class,
                  e -> assertThat(e.code()).isEqualTo(ErrorCode.REGISTRY_UNAVAILABLE))
              .hasMessageContaining("run docker login " + host)
              .hasMessageContaining("--registry-password-file")
              .hasMessageNotContaining("not-it");
        }
      }

      // The user and password given (--registry-username, --registry-password-file).
      try (RegistryPush push =
          new RegistryPush(
              tmp.resolve("c1"), 1, true, RegistryLogins.given(host, "kiln", "s3cret-pass"))) {
        assertThat(push.push(image, config, repo + ":a").blobsSent()).isEqualTo(blobs);
      }
      // What docker login writes: the Docker config's auths for the registry.
      String auth =
          java.util.Base64.getEncoder()
              .encodeToString("kiln:s3cret-pass".getBytes(StandardCharsets.UTF_8));
      Path docker = Files.createDirectories(tmp.resolve("docker")).resolve("config.json");
      Files.writeString(docker, "{\"auths\":{\"" + host + "\":{\"auth\":\"" + auth + "\"}}}");
      try (RegistryPush push =
          new RegistryPush(tmp.resolve("c2"), 1, true, RegistryLogins.dockerConfig(docker))) {
        RegistryPush.Pushed again = push.push(image, config, repo + ":b");
        assertThat(again.blobsPresent()).as("all there from the first push").isEqualTo(blobs);
      }
      assertThat(RegistryLogins.given(host, "kiln", "s3cret-pass").toString())
          .contains("kiln")
          .doesNotContain("s3cret");
    }
  }

  @Test
  void anImageIsPushedCompressedOnceAndOnlyWhatTheRegistryLacksIsSentAgain() throws Exception {
    BaseImage base = BaseImage.parse(TestImages.baseArchive().toString());
    try (ImageBuilder images = new ImageBuilder(base, tmp.resolve("images"));
        RegistryPush push = new RegistryPush(tmp.resolve("compressed"), 1, true);
        LocalRegistry registry = LocalRegistry.start(tmp.resolve("registry"))) {
      BuiltImage first = images.build(withPackage(TestImages.udf("kiln/udf:a", LIBRARY, CODE)));
      String repo = "localhost:" + registry.port() + "/kiln/udf";

      RegistryPush.Pushed pushed = push.push(first, images.configBlob(first), repo + ":a");
      int blobs = first.layers().size() + 1;
      assertThat(pushed.blobsSent()).isEqualTo(blobs);
      assertThat(pushed.blobsPresent()).isZero();
      assertThat(pushed.reference()).isEqualTo(repo + "@" + pushed.manifestDigest());
      // The package layer is a plain tar in the layout: it was compressed for the registry.
      ImageLayer pkg =
          first.layers().stream()
              .filter(l -> l.mediaType().equals(LayerBlob.TAR))
              .findFirst()
              .get();
      try (var kept = Files.list(tmp.resolve("compressed"))) {
        assertThat(kept.map(p -> p.getFileName().toString()))
            .contains(pkg.diffId().hex() + ".tar.gz");
      }

      // What the registry serves: an OCI manifest of gzip layers, each the layout's layer inside.
      JsonNode manifest =
          JSON.readTree(get(registry, "/v2/kiln/udf/manifests/a").body().readAllBytes());
      assertThat(manifest.path("config").path("digest").asText())
          .isEqualTo(first.configDigest().toString());
      assertThat(manifest.path("layers")).hasSize(first.layers().size());
      for (int i = 0; i < first.layers().size(); i++) {
        JsonNode layer = manifest.path("layers").get(i);
        assertThat(layer.path("mediaType").asText()).endsWith("tar+gzip");
        try (InputStream gz =
                get(registry, "/v2/kiln/udf/blobs/" + layer.path("digest").asText()).body();
            InputStream tar = new GZIPInputStream(gz)) {
          assertThat(Digest.of(tar)).isEqualTo(first.layers().get(i).diffId());
        }
      }

      // Again: the same compressed blobs, all present, the same manifest.
      RegistryPush.Pushed again = push.push(first, images.configBlob(first), repo + ":a");
      assertThat(again.blobsSent()).isZero();
      assertThat(again.blobsPresent()).isEqualTo(blobs);
      assertThat(again.manifestDigest()).isEqualTo(pushed.manifestDigest());

      // Another UDF over the same base and library: only its code layer and config are new.
      BuiltImage second =
          images.build(
              withPackage(TestImages.udf("kiln/udf:b", LIBRARY, "def f(x):\n  return 2\n")));
      RegistryPush.Pushed other = push.push(second, images.configBlob(second), repo + ":b");
      assertThat(other.blobsSent()).isEqualTo(2);
      assertThat(other.blobsPresent()).isEqualTo(second.layers().size() - 1);

      // The compressed layers go once no push used them since the cut-off (kiln cache gc).
      Path kept = tmp.resolve("compressed").resolve(pkg.diffId().hex() + ".tar.gz");
      assertThat(push.collect(Instant.now().minusSeconds(3600), false).layers())
          .as("used within the hour")
          .isZero();
      RegistryPush.Collected dry = push.collect(Instant.now().plusSeconds(1), true);
      assertThat(dry.layers()).isPositive();
      assertThat(dry.bytes()).isGreaterThan(Files.size(kept));
      assertThat(kept).as("a dry run removes nothing").exists();
      assertThat(push.collect(Instant.now().plusSeconds(1), false)).isEqualTo(dry);
      assertThat(kept).doesNotExist();
      // A later push compresses what it needs again, to the same blob the registry has.
      RegistryPush.Pushed afterGc = push.push(first, images.configBlob(first), repo + ":c");
      assertThat(afterGc.blobsPresent()).isEqualTo(blobs);
      assertThat(afterGc.manifestDigest()).isEqualTo(pushed.manifestDigest());
      assertThat(kept).exists();
    }
  }

  @Test
  void aRegistryThatIsGoneIsNamedInTheError() throws Exception {
    BaseImage base = BaseImage.parse(TestImages.baseArchive().toString());
    String target;
    try (LocalRegistry registry = LocalRegistry.start(tmp.resolve("registry"))) {
      target = "localhost:" + registry.port() + "/kiln/udf:gone";
    }
    try (ImageBuilder images = new ImageBuilder(base, tmp.resolve("images"));
        RegistryPush push = new RegistryPush(tmp.resolve("compressed"), 1, true)) {
      BuiltImage image =
          images.build(TestImages.udf("kiln/udf:g", LIBRARY, "def f(x):\n  return x\n"));
      assertThatThrownBy(() -> push.push(image, images.configBlob(image), target))
          .isInstanceOfSatisfying(
              KilnException.class,
              e -> assertThat(e.code()).isEqualTo(ErrorCode.REGISTRY_UNAVAILABLE))
          .hasMessageContaining("to " + target + " failed")
          .hasMessageContaining("check that the registry is up");
    }
  }
}
