package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class LocalBlobStoreTest {
  @TempDir Path tmp;

  @Test
  void aFileOfKnownContentIsStoredAsALinkAndOtherwiseLeftToPut() throws Exception {
    LocalBlobStore store = new LocalBlobStore(tmp.resolve("blobs"));
    byte[] bytes = "layer".getBytes(StandardCharsets.UTF_8);
    Path file = Files.write(tmp.resolve("layer.tar"), bytes);
    Digest digest = Digest.of(bytes);

    assertThat(store.link(digest, file, bytes.length + 1)).as("not the size expected").isFalse();
    assertThat(store.contains(digest)).isFalse();

    assertThat(store.link(digest, file, bytes.length)).isTrue();
    assertThat(Files.isSameFile(store.path(digest), file)).isTrue();
    assertThat(store.file(digest)).hasValue(store.path(digest));

    // Present already: nothing to do, also from another file.
    Path other = Files.write(tmp.resolve("other.tar"), bytes);
    assertThat(store.link(digest, other, bytes.length)).isTrue();
    assertThat(Files.isSameFile(store.path(digest), file)).isTrue();

    // The store's name goes with the blob; the caller's file may go away.
    Files.delete(file);
    assertThat(store.path(digest)).hasBinaryContent(bytes);
  }
}
