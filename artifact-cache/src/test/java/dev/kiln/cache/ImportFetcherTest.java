package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import mockwebserver3.MockResponse;
import mockwebserver3.MockWebServer;
import mockwebserver3.SocketEffect;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Staged imports through real presigned URLs (signed by the AWS SDK presigner, served by s3proxy,
 * with real signature and expiry checks); retry behaviour against mockwebserver, which can answer
 * 5xx, cut a body short and count requests.
 */
class ImportFetcherTest {
  private static final Tuning QUICK =
      Tuning.DEFAULT.withImports(Duration.ofSeconds(5), 4, Duration.ofMillis(10));
  static S3ProxyServer s3;
  @TempDir Path dir;
  ArtifactCache cache;
  ImportFetcher imports;

  @BeforeAll
  static void startS3() throws Exception {
    s3 = S3ProxyServer.shared();
    s3.createBucket("stage");
    s3.createBucket("other-stage");
  }

  @BeforeEach
  void openCache() throws Exception {
    cache = ArtifactCache.open(CacheConfig.defaults(dir), new SimpleMeterRegistry(), QUICK);
    imports = cache.imports();
  }

  @AfterEach
  void closeCache() {
    cache.close();
  }

  private String stage(String key, String content) {
    s3.putObject("stage", key, content.getBytes(StandardCharsets.UTF_8));
    return s3.presignGet("stage", key, Duration.ofDays(1));
  }

  private String content(Digest d) throws Exception {
    return Files.readString(cache.file(d).orElseThrow());
  }

  @Test
  void anImportIsDownloadedOnceAndThenServedWithoutTheUrl() throws Exception {
    String url = stage("imports/helper.py", "def helper(): return 42\n");
    Digest d = imports.fetch("acme", "@stage/imports/helper.py", "etag-1", url);
    assertThat(content(d)).isEqualTo("def helper(): return 42\n");

    // Databend signs a new URL on every call; the key is (tenant, location, tag), not the URL.
    String fresh = s3.presignGet("stage", "imports/helper.py", Duration.ofDays(1));
    assertThat(imports.fetch("acme", "@stage/imports/helper.py", "etag-1", fresh)).isEqualTo(d);
    // A known key makes no request at all: even a URL nobody answers is never used.
    assertThat(imports.fetch("acme", "@stage/imports/helper.py", "etag-1", "http://127.0.0.1:1/x"))
        .isEqualTo(d);
    CacheStats stats = cache.stats();
    assertThat(stats.importDownloads()).isEqualTo(1);
    assertThat(stats.importDownloadsAvoided()).isEqualTo(2);
  }

  @Test
  void aChangedTagDownloadsAgain() throws Exception {
    String v1 = stage("imports/data.txt", "version 1");
    Digest d1 = imports.fetch("acme", "@stage/imports/data.txt", "etag-1", v1);
    String v2 = stage("imports/data.txt", "version 2");
    Digest d2 = imports.fetch("acme", "@stage/imports/data.txt", "etag-2", v2);
    assertThat(d2).isNotEqualTo(d1);
    assertThat(content(d2)).isEqualTo("version 2");
    assertThat(content(d1)).isEqualTo("version 1");
    assertThat(cache.stats().importDownloads()).isEqualTo(2);
  }

  @Test
  void twoTenantsWithTheSameLocationAndTagGetTheirOwnContent() throws Exception {
    s3.putObject("stage", "imports/conf.txt", "acme's".getBytes(StandardCharsets.UTF_8));
    s3.putObject("other-stage", "imports/conf.txt", "globex's".getBytes(StandardCharsets.UTF_8));
    String acmeUrl = s3.presignGet("stage", "imports/conf.txt", Duration.ofDays(1));
    String globexUrl = s3.presignGet("other-stage", "imports/conf.txt", Duration.ofDays(1));
    Digest acme = imports.fetch("acme", "@s/imports/conf.txt", "same-tag", acmeUrl);
    Digest globex = imports.fetch("globex", "@s/imports/conf.txt", "same-tag", globexUrl);
    assertThat(content(acme)).isEqualTo("acme's");
    assertThat(content(globex)).isEqualTo("globex's");
    // And each keeps getting its own, without downloading again.
    assertThat(imports.fetch("globex", "@s/imports/conf.txt", "same-tag", acmeUrl))
        .isEqualTo(globex);
    assertThat(imports.fetch("acme", "@s/imports/conf.txt", "same-tag", globexUrl)).isEqualTo(acme);
    assertThat(cache.stats().importDownloads()).isEqualTo(2);
  }

  @Test
  void anExpiredUrlFailsWithTheLocationAndTheStatus() throws Exception {
    s3.putObject("stage", "imports/old.py", "x = 1".getBytes(StandardCharsets.UTF_8));
    String url = s3.presignGet("stage", "imports/old.py", Duration.ofSeconds(1));
    awaitStatus(url, 403);
    assertThatThrownBy(() -> imports.fetch("acme", "@stage/imports/old.py", "etag-9", url))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.getMessage()).contains("answered 403");
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_FAILED);
              assertThat(e.getMessage()).startsWith("import @stage/imports/old.py:");
              assertThat(e.getMessage())
                  .startsWith("import @stage/imports/old.py: the presigned URL answered 403")
                  .contains("expired or revoked?")
                  .doesNotContain("X-Amz-Signature");
            });
    assertThat(cache.stats().importDownloads()).isZero();
  }

  @Test
  void aMissingFileFailsWith404() throws Exception {
    String url = s3.presignGet("stage", "imports/deleted.py", Duration.ofDays(1));
    assertThatThrownBy(() -> imports.fetch("acme", "@stage/imports/deleted.py", "e", url))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.getMessage()).contains("answered 404");
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_FAILED);
              assertThat(e.getMessage())
                  .contains("@stage/imports/deleted.py")
                  .contains("404")
                  .contains("NoSuchKey")
                  .contains("no longer in the stage");
            });
  }

  @Test
  void anImportWhoseBlobIsGoneFromEveryTierIsDownloadedAgain() throws Exception {
    String url = stage("imports/lib.py", "lib");
    Digest d = imports.fetch("acme", "@stage/imports/lib.py", "t", url);
    Files.delete(cache.file(d).orElseThrow()); // the local tier notices a vanished file
    assertThat(imports.fetch("acme", "@stage/imports/lib.py", "t", url)).isEqualTo(d);
    assertThat(content(d)).isEqualTo("lib");
    assertThat(cache.stats().importDownloads()).isEqualTo(2);
  }

  /** Polls until the URL answers {@code status} (its expiry passed), with a deadline. */
  private static void awaitStatus(String url, int status) throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
    while (true) {
      int got =
          http.send(
                  HttpRequest.newBuilder(URI.create(url)).build(),
                  HttpResponse.BodyHandlers.discarding())
              .statusCode();
      if (got == status) {
        return;
      }
      assertThat(System.nanoTime())
          .as("URL answers %d before the deadline", status)
          .isLessThan(deadline);
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(100));
    }
  }

  // ------------------------------------------------------------------ retries (mockwebserver)

  @Test
  void serverErrorsAndCutDownloadsAreRetried() throws Exception {
    try (MockWebServer server = new MockWebServer()) {
      server.enqueue(new MockResponse.Builder().code(503).build());
      server.enqueue(
          new MockResponse.Builder()
              .body("a body that the connection cuts short")
              .onResponseBody(SocketEffect.ShutdownConnection.INSTANCE)
              .build());
      server.enqueue(new MockResponse.Builder().code(500).build());
      server.enqueue(new MockResponse.Builder().body("finally").build());
      server.start();
      Digest d = imports.fetch("acme", "@s/flaky.txt", "t", server.url("/flaky").toString());
      assertThat(content(d)).isEqualTo("finally");
      assertThat(server.getRequestCount()).isEqualTo(4);
      assertThat(server.takeRequest().getHeaders().get("Accept-Encoding")).isEqualTo("identity");
    }
  }

  @Test
  void theHeadersGivenWithTheUrlAreSentWithIt() throws Exception {
    try (MockWebServer server = new MockWebServer()) {
      server.enqueue(new MockResponse.Builder().body("x = 1").build());
      server.start();
      String host = server.getHostName() + ":" + server.getPort();
      imports.fetch(
          "acme",
          "@s/h.py",
          "",
          server.url("/h.py").toString(),
          java.util.Map.of("host", host, "x-amz-meta-kiln", "yes"));
      var request = server.takeRequest();
      assertThat(request.getHeaders().get("x-amz-meta-kiln")).isEqualTo("yes");
      assertThat(request.getHeaders().get("host")).isEqualTo(host);
    }
  }

  @Test
  void clientErrorsAreNotRetried() throws Exception {
    try (MockWebServer server = new MockWebServer()) {
      server.enqueue(new MockResponse.Builder().code(403).build());
      server.enqueue(new MockResponse.Builder().body("never asked for").build());
      server.start();
      assertThatThrownBy(
              () -> imports.fetch("acme", "@s/a.py", "t", server.url("/a.py").toString()))
          .isInstanceOfSatisfying(
              KilnException.class,
              e -> {
                assertThat(e.getMessage()).contains("answered 403");
                assertThat(e.getMessage())
                    .startsWith("import @s/a.py: the presigned URL answered 403 Forbidden")
                    .contains("(expired or revoked?)");
              });
      assertThat(server.getRequestCount()).isEqualTo(1);
    }
  }

  @Test
  void persistentServerErrorsFailWithTheStatusAfterEveryAttempt() throws Exception {
    try (MockWebServer server = new MockWebServer()) {
      for (int i = 0; i < 4; i++) {
        server.enqueue(new MockResponse.Builder().code(503).build());
      }
      server.start();
      assertThatThrownBy(
              () -> imports.fetch("acme", "@s/b.py", "t", server.url("/b.py").toString()))
          .isInstanceOfSatisfying(
              KilnException.class,
              e -> {
                assertThat(e.getMessage()).contains("answered 503");
                assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_UNAVAILABLE);
                assertThat(e.getMessage())
                    .contains("@s/b.py")
                    .contains("503 Service Unavailable on all 4 attempts");
              });
      assertThat(server.getRequestCount()).isEqualTo(4);
    }
  }

  @Test
  void anUnreachableHostFailsNamingTheHostNotTheUrl() throws Exception {
    int port;
    try (var s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort(); // closed again: connections are refused
    }
    String url = "http://127.0.0.1:" + port + "/c.py?X-Amz-Signature=secret";
    assertThatThrownBy(() -> imports.fetch("acme", "@s/c.py", "t", url))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.getMessage()).doesNotContain("answered");
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_UNAVAILABLE);
              assertThat(e.getMessage())
                  .contains("import @s/c.py: could not download it from 127.0.0.1:" + port)
                  .contains("in 4 attempts")
                  .doesNotContain("secret");
            });
  }

  @Test
  void aMalformedUrlIsAPermanentError() {
    assertThatThrownBy(() -> imports.fetch("acme", "@s/d.py", "t", "not a url"))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_FAILED);
              assertThat(e.getMessage()).contains("@s/d.py").contains("not an http(s) URL");
            });
  }

  @Test
  void concurrentFetchesOfOneImportDownloadItOnce() throws Exception {
    try (MockWebServer server = new MockWebServer()) {
      server.enqueue(
          new MockResponse.Builder()
              .body("shared")
              .headersDelay(300, TimeUnit.MILLISECONDS)
              .build());
      server.enqueue(new MockResponse.Builder().code(500).build());
      server.start();
      String url = server.url("/shared").toString();
      int n = 6;
      CountDownLatch go = new CountDownLatch(1);
      ExecutorService pool = Executors.newFixedThreadPool(n);
      List<Future<Digest>> results = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        results.add(
            pool.submit(
                (Callable<Digest>)
                    () -> {
                      go.await();
                      return imports.fetch("acme", "@s/shared.txt", "t", url);
                    }));
      }
      go.countDown();
      for (Future<Digest> f : results) {
        assertThat(content(f.get())).isEqualTo("shared");
      }
      pool.shutdown();
      assertThat(server.getRequestCount()).isEqualTo(1);
      assertThat(cache.stats().importDownloads()).isEqualTo(1);
    }
  }

  @Test
  void anEmptyTagIsNeverCached() throws Exception {
    try (MockWebServer server = new MockWebServer()) {
      server.enqueue(new MockResponse.Builder().body("one").build());
      server.enqueue(new MockResponse.Builder().body("two").build());
      server.start();
      String url = server.url("/e").toString();
      assertThat(content(imports.fetch("acme", "@s/e.txt", "", url))).isEqualTo("one");
      assertThat(content(imports.fetch("acme", "@s/e.txt", "", url))).isEqualTo("two");
    }
  }

  @Test
  void importsGoToTheRemoteTierToo() throws Exception {
    cache.close();
    S3Settings remote = s3.settings("import-cache", "");
    cache =
        ArtifactCache.open(
            new CacheConfig(dir.resolve("r"), 0, 0, 1L << 30, Optional.of(remote)),
            new SimpleMeterRegistry(),
            QUICK);
    Digest d = cache.imports().fetch("acme", "@stage/x", "t", stage("x", "shared bytes"));
    assertThat(cache.awaitRemoteWrites(Duration.ofSeconds(20))).isTrue();
    assertThat(s3.exists("import-cache", "sha256/" + d.hex())).isTrue();
  }
}
