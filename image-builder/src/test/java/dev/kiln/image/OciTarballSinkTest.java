package dev.kiln.image;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.cache.CorruptBlobException;
import dev.kiln.cache.Digest;
import dev.kiln.cache.LocalBlobStore;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.stream.Stream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The streaming reader of Jib's image tarballs, fed tarballs written here with Commons Compress in
 * the shapes a tar writer may use (PAX and GNU long names), in odd-sized pieces.
 */
class OciTarballSinkTest {
  @TempDir Path tmp;

  @Test
  void storesNewBlobsSkipsKnownOnesAndReadsTheIndex() throws Exception {
    LocalBlobStore blobs = new LocalBlobStore(tmp.resolve("blobs"), tmp.resolve("blobs-tmp"));
    byte[] known = random(70_000, 1);
    byte[] fresh = random(1_234_567, 2);
    byte[] empty = new byte[0];
    blobs.put(known);
    Digest manifest = Digest.of("{\"manifest\":true}".getBytes(StandardCharsets.UTF_8));

    for (int mode :
        new int[] {TarArchiveOutputStream.LONGFILE_POSIX, TarArchiveOutputStream.LONGFILE_GNU}) {
      ByteArrayOutputStream tar = new ByteArrayOutputStream();
      try (TarArchiveOutputStream out = new TarArchiveOutputStream(tar)) {
        out.setLongFileMode(mode);
        put(out, "x".repeat(150) + "/a-long-name-that-needs-an-extended-header", "ignored");
        put(out, "blobs/sha256/" + Digest.of(known).hex(), known);
        put(out, "blobs/sha256/" + Digest.of(fresh).hex(), fresh);
        put(out, "blobs/sha256/" + Digest.of(empty).hex(), empty);
        put(out, "oci-layout", "{\"imageLayoutVersion\": \"1.0.0\"}");
        put(
            out,
            "index.json",
            "{\"schemaVersion\":2,\"manifests\":[{\"digest\":\"" + manifest + "\"}]}");
      }
      Path scratch = Files.createDirectories(tmp.resolve("scratch-" + mode));
      OciTarballSink sink = new OciTarballSink(blobs, scratch);
      writeInPieces(sink, tar.toByteArray());
      assertThat(sink.finish()).isEqualTo(manifest);
      sink.close();
      assertThat(blobs.contains(Digest.of(fresh))).isTrue();
      assertThat(Files.readAllBytes(blobs.path(Digest.of(fresh)))).isEqualTo(fresh);
      assertThat(blobs.contains(Digest.of(empty))).isTrue();
      try (Stream<Path> left = Files.list(scratch)) {
        assertThat(left).as("no scratch files left").isEmpty();
      }
      if (mode == TarArchiveOutputStream.LONGFILE_POSIX) {
        assertThat(sink.blobsWritten()).isEqualTo(2);
      } else {
        assertThat(sink.blobsWritten()).isZero(); // all present after the first tarball
      }
      assertThat(sink.blobsSkipped())
          .isEqualTo(mode == TarArchiveOutputStream.LONGFILE_POSIX ? 1 : 3);
    }
  }

  @Test
  void aBlobThatDoesNotMatchItsNameIsRefused() throws Exception {
    LocalBlobStore blobs = new LocalBlobStore(tmp.resolve("blobs"), tmp.resolve("blobs-tmp"));
    ByteArrayOutputStream tar = new ByteArrayOutputStream();
    try (TarArchiveOutputStream out = new TarArchiveOutputStream(tar)) {
      put(out, "blobs/sha256/" + Digest.of(new byte[] {1}).hex(), new byte[] {2});
    }
    OciTarballSink sink = new OciTarballSink(blobs, Files.createDirectories(tmp.resolve("s")));
    assertThatThrownBy(() -> sink.write(tar.toByteArray()))
        .isInstanceOf(CorruptBlobException.class);
    sink.close();
  }

  @Test
  void aTruncatedTarballIsAnError() throws Exception {
    LocalBlobStore blobs = new LocalBlobStore(tmp.resolve("blobs"), tmp.resolve("blobs-tmp"));
    byte[] blob = random(10_000, 3);
    ByteArrayOutputStream tar = new ByteArrayOutputStream();
    try (TarArchiveOutputStream out = new TarArchiveOutputStream(tar)) {
      put(out, "blobs/sha256/" + Digest.of(blob).hex(), blob);
    }
    Path scratch = Files.createDirectories(tmp.resolve("s"));
    OciTarballSink sink = new OciTarballSink(blobs, scratch);
    sink.write(Arrays.copyOf(tar.toByteArray(), 5_000));
    assertThatThrownBy(sink::finish)
        .isInstanceOf(IOException.class)
        .hasMessageContaining("ended early");
    sink.close();
    try (Stream<Path> left = Files.list(scratch)) {
      assertThat(left).as("the half blob is deleted").isEmpty();
    }
    assertThat(blobs.contains(Digest.of(blob))).isFalse();
  }

  private static void writeInPieces(OciTarballSink sink, byte[] bytes) throws IOException {
    Random random = new Random(5);
    int off = 0;
    while (off < bytes.length) {
      int n = Math.min(bytes.length - off, 1 + random.nextInt(9000));
      if (n == 1) {
        sink.write(bytes[off]);
      } else {
        sink.write(bytes, off, n);
      }
      off += n;
    }
  }

  private static void put(TarArchiveOutputStream out, String name, String content)
      throws IOException {
    put(out, name, content.getBytes(StandardCharsets.UTF_8));
  }

  private static void put(TarArchiveOutputStream out, String name, byte[] content)
      throws IOException {
    TarArchiveEntry e = new TarArchiveEntry(name);
    e.setSize(content.length);
    out.putArchiveEntry(e);
    out.write(content);
    out.closeArchiveEntry();
  }

  private static byte[] random(int n, long seed) {
    byte[] b = new byte[n];
    new Random(seed).nextBytes(b);
    return b;
  }
}
