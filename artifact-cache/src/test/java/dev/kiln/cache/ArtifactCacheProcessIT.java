package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;

import com.sun.net.httpserver.HttpServer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Faults that need a separate process: a kill -9 in the middle of a write, a small heap. */
class ArtifactCacheProcessIT {
  @TempDir Path dir;

  private Process child(List<String> jvmArgs, String... args) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    cmd.addAll(jvmArgs);
    cmd.add("--enable-native-access=ALL-UNNAMED");
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(CacheChild.class.getName());
    cmd.addAll(List.of(args));
    return new ProcessBuilder(cmd).redirectError(dir.resolve("child-stderr.txt").toFile()).start();
  }

  private String stderr() throws IOException {
    Path p = dir.resolve("child-stderr.txt");
    return Files.exists(p) ? Files.readString(p) : "";
  }

  @Test
  void aProcessKilledInTheMiddleOfAWriteLeavesNoPartialBlob() throws Exception {
    Path cacheDir = dir.resolve("cache");
    Process p = child(List.of(), "put", cacheDir.toString());
    String stored;
    try (BufferedReader out =
        new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
      stored = out.readLine();
      assertThat(stored).as("child stderr: %s", stderr()).startsWith("stored ");
      assertThat(out.readLine()).isEqualTo("writing");
      try (Stream<Path> tmp = Files.list(cacheDir.resolve("tmp"))) {
        assertThat(tmp.toList()).as("a write in progress").hasSize(1);
      }
      p.destroyForcibly(); // SIGKILL: no shutdown hook, no close()
      assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    }
    Digest complete = Digest.parse(stored.substring("stored ".length()));
    try (ArtifactCache cache =
        ArtifactCache.open(CacheConfig.defaults(cacheDir), new SimpleMeterRegistry())) {
      assertThat(Files.readAllBytes(cache.file(complete).orElseThrow()))
          .isEqualTo(BlobTierContract.randomBytes(4096, CacheChild.SEED));
      TierStats local = cache.stats().tiers().get(1);
      assertThat(local.entries()).as("only the complete blob").isEqualTo(1);
      assertThat(local.sizeBytes()).isEqualTo(4096);
    }
    try (Stream<Path> blobs = Files.walk(cacheDir.resolve("blobs"))) {
      assertThat(blobs.filter(Files::isRegularFile).map(f -> f.getFileName().toString()))
          .containsExactly(complete.hex());
    }
    try (Stream<Path> tmp = Files.list(cacheDir.resolve("tmp"))) {
      assertThat(tmp).as("the partial write was cleaned up").isEmpty();
    }
  }

  @Test
  void anImportEightTimesTheHeapStreamsToDisk() throws Exception {
    int blocks = 256; // 256 MiB through a 32 MiB heap
    byte[] block = new byte[1 << 20];
    new Random(7).nextBytes(block);
    MessageDigest sha = Digest.newSha256();
    for (int i = 0; i < blocks; i++) {
      sha.update(numbered(block, i));
    }
    Digest expected = Digest.fromSha(sha);
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    server.createContext(
        "/big.bin",
        ex -> {
          ex.sendResponseHeaders(200, (long) blocks << 20);
          try (OutputStream out = ex.getResponseBody()) {
            for (int i = 0; i < blocks; i++) {
              out.write(numbered(block, i));
            }
          }
        });
    server.start();
    try {
      Path cacheDir = dir.resolve("cache");
      String url = "http://127.0.0.1:" + server.getAddress().getPort() + "/big.bin";
      Process p = child(List.of("-Xmx32m"), "import", cacheDir.toString(), url);
      String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
      assertThat(p.waitFor(120, TimeUnit.SECONDS)).isTrue();
      assertThat(p.exitValue()).as("child stderr: %s", stderr()).isZero();
      assertThat(out).isEqualTo("imported " + expected);
      Path blob =
          cacheDir
              .resolve("blobs/sha256")
              .resolve(expected.hex().substring(0, 2))
              .resolve(expected.hex());
      assertThat(Files.size(blob)).isEqualTo((long) blocks << 20);
    } finally {
      server.stop(0);
    }
  }

  /** The block with its number in its first bytes, so the stream is not periodic. */
  private static byte[] numbered(byte[] block, int i) {
    block[0] = (byte) i;
    block[1] = (byte) (i >> 8);
    return block;
  }
}
