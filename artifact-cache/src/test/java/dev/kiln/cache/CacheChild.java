package dev.kiln.cache;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.ByteArrayInputStream;
import java.io.InputStream;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;

/**
 * The main class of a child JVM that a test kills or starves ({@link ArtifactCacheProcessIT}):
 *
 * <ul>
 *   <li>{@code put DIR}: stores one small blob (prints {@code stored <digest>}), then starts a put
 *       of an endless stream, prints {@code writing} after 8 MiB and hangs there until killed;
 *   <li>{@code import DIR URL}: fetches one import and prints {@code imported <digest>}.
 * </ul>
 */
public final class CacheChild {
  private CacheChild() {}

  static final long SEED = 42;

  public static void main(String[] args) throws Exception {
    Path dir = Path.of(args[1]);
    try (ArtifactCache cache =
        ArtifactCache.open(CacheConfig.defaults(dir), new SimpleMeterRegistry())) {
      switch (args[0]) {
        case "put" -> {
          Digest d = cache.put(new ByteArrayInputStream(BlobTierContract.randomBytes(4096, SEED)));
          System.out.println("stored " + d);
          System.out.flush();
          cache.put(new EndlessStream(8 << 20));
        }
        case "import" -> {
          Digest d = cache.imports().fetch("acme", "@stage/big.bin", "tag", args[2]);
          System.out.println("imported " + d);
        }
        default -> throw new IllegalArgumentException(args[0]);
      }
    }
  }

  /** Zeros without end; says {@code writing} once {@code announceAt} bytes went out, then hangs. */
  private static final class EndlessStream extends InputStream {
    private final long announceAt;
    private long sent;

    EndlessStream(long announceAt) {
      this.announceAt = announceAt;
    }

    @Override
    public int read() {
      byte[] one = new byte[1];
      read(one, 0, 1);
      return one[0] & 0xff;
    }

    @Override
    public int read(byte[] b, int off, int len) {
      if (sent >= announceAt) {
        System.out.println("writing");
        System.out.flush();
        try {
          new CountDownLatch(1).await(); // until the test kills this process
        } catch (InterruptedException e) {
          Thread.currentThread().interrupt();
        }
      }
      int n = (int) Math.min(len, announceAt - sent);
      java.util.Arrays.fill(b, off, off + n, (byte) 0);
      sent += n;
      return n;
    }
  }
}
