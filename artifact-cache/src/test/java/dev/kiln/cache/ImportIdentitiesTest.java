package dev.kiln.cache;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.LockSupport;
import mockwebserver3.Dispatcher;
import mockwebserver3.MockResponse;
import mockwebserver3.MockWebServer;
import mockwebserver3.RecordedRequest;
import okhttp3.OkHttpClient;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Identities of tagless imports over real HTTP: mockwebserver for what a storage may answer and to
 * count requests, s3proxy for real presigned URLs and re-uploads. Time is a {@link ManualTime}: the
 * test moves it and the background rounds run on the test's thread (checks on a direct executor),
 * so nothing sleeps.
 */
class ImportIdentitiesTest {
  private static final Duration FRESHNESS = Duration.ofSeconds(1);
  private static final Duration HALF = FRESHNESS.dividedBy(2);
  private static final Duration WINDOW = Duration.ofSeconds(10);
  private static final Tuning TUNING = Tuning.DEFAULT.withIdentities(FRESHNESS, WINDOW, 100);
  private static final String LAST_MODIFIED = "Wed, 21 Oct 2026 07:28:00 GMT";
  static S3ProxyServer s3;

  final ManualTime time = new ManualTime();
  final ScheduledExecutorService scheduler = time.scheduler();
  final OkHttpClient http = new OkHttpClient();
  final MockWebServer server = new MockWebServer();
  ImportIdentities identities;

  @BeforeAll
  static void startS3() throws Exception {
    s3 = S3ProxyServer.shared();
    s3.createBucket("identity-stage");
  }

  @BeforeEach
  void open() throws Exception {
    server.start();
    identities = new ImportIdentities(http, TUNING, time, scheduler, Runnable::run);
  }

  @AfterEach
  void close() {
    identities.close();
    server.close();
    http.dispatcher().executorService().shutdown();
    http.connectionPool().evictAll();
  }

  /**
   * A stored object behind every path of the server, answering like S3: a 206 with the ETag the
   * test sets or, by default, {@code "v<n>"} for the n-th request of its path (so an answer shows
   * which request it came from); or the status the test sets. Counts requests per path.
   */
  static class Storage extends Dispatcher {
    final Map<String, AtomicInteger> requests = new ConcurrentHashMap<>();
    volatile int status = 206;
    volatile String etag;

    @Override
    public MockResponse dispatch(RecordedRequest request) {
      int n =
          requests
              .computeIfAbsent(request.getUrl().encodedPath(), p -> new AtomicInteger())
              .incrementAndGet();
      if (status != 206) {
        return new MockResponse.Builder().code(status).build();
      }
      return new MockResponse.Builder()
          .code(206)
          .setHeader("ETag", etag != null ? etag : "\"v" + n + "\"")
          .setHeader("Content-Range", "bytes 0-0/5")
          .body("h")
          .build();
    }

    int count(String path) {
      AtomicInteger n = requests.get(path);
      return n == null ? 0 : n.get();
    }
  }

  private Storage storage() {
    Storage storage = new Storage();
    server.setDispatcher(storage);
    return storage;
  }

  private String url(String path) {
    return server.url(path).toString();
  }

  private String tag(String location, String path) throws Exception {
    return identities.tag("acme", location, url(path), Map.of());
  }

  // ------------------------------------------------------------------ what a check asks and reads

  @Test
  void theEtagIsTheIdentityAskedForWithAOneByteGetAndTheGivenHeaders() throws Exception {
    server.enqueue(
        new MockResponse.Builder()
            .code(206)
            .setHeader("ETag", "\"abc\"")
            .setHeader("Content-Range", "bytes 0-0/1234")
            .setHeader("Last-Modified", LAST_MODIFIED)
            .body("h")
            .build());
    String host = server.getHostName() + ":" + server.getPort();
    String tag =
        identities.tag(
            "acme", "@s/h.py", url("/h.py"), Map.of("host", host, "x-amz-meta-kiln", "yes"));
    assertThat(tag).isEqualTo("etag:\"abc\"");
    RecordedRequest request = server.takeRequest(5, TimeUnit.SECONDS);
    assertThat(request.getMethod()).isEqualTo("GET");
    assertThat(request.getHeaders().get("Range")).isEqualTo("bytes=0-0");
    assertThat(request.getHeaders().get("host")).isEqualTo(host);
    assertThat(request.getHeaders().get("x-amz-meta-kiln")).isEqualTo("yes");
  }

  @Test
  void withoutAnEtagLastModifiedAndTheTotalLengthAreTheIdentity() throws Exception {
    server.enqueue(
        new MockResponse.Builder()
            .code(206)
            .setHeader("Last-Modified", LAST_MODIFIED)
            .setHeader("Content-Range", "bytes 0-0/1234")
            .body("h")
            .build());
    // A server that ignores Range sends the whole file; its Content-Length is the total.
    server.enqueue(
        new MockResponse.Builder().setHeader("Last-Modified", LAST_MODIFIED).body("12345").build());
    assertThat(tag("@s/a.py", "/a.py")).isEqualTo("lm:" + LAST_MODIFIED + ";len:1234");
    assertThat(tag("@s/b.py", "/b.py")).isEqualTo("lm:" + LAST_MODIFIED + ";len:5");
  }

  @Test
  void anEmptyObjectThatHasNoFirstByteIsAskedForWhole() throws Exception {
    server.enqueue(
        new MockResponse.Builder().code(416).setHeader("Content-Range", "bytes */0").build());
    server.enqueue(new MockResponse.Builder().setHeader("ETag", "\"empty\"").build());
    assertThat(tag("@s/__init__.py", "/__init__.py")).isEqualTo("etag:\"empty\"");
    assertThat(server.takeRequest().getHeaders().get("Range")).isEqualTo("bytes=0-0");
    assertThat(server.takeRequest().getHeaders().get("Range")).isNull();
  }

  @Test
  void anAnswerWithNeitherEtagNorLastModifiedIsRefused() {
    server.enqueue(new MockResponse.Builder().code(206).body("h").build());
    assertThatThrownBy(() -> tag("@s/n.py", "/n.py"))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_FAILED);
              assertThat(e.getMessage())
                  .startsWith("import @s/n.py: the stage's storage sends neither an ETag nor");
            });
  }

  // ------------------------------------------------------------------ memory, freshness, sharing

  @Test
  void freshIdentitiesComeFromMemoryAndStaleOnesAreAskedOnce() throws Exception {
    Storage storage = storage();
    assertThat(tag("@s/m.py", "/m.py")).isEqualTo("etag:\"v1\"");
    time.jump(FRESHNESS); // exactly as old as allowed; the background did not run
    // A new URL each time, as Databend sends: the identity is per location, not per URL.
    assertThat(tag("@s/m.py", "/m.py?sig=2")).isEqualTo("etag:\"v1\"");
    assertThat(storage.count("/m.py")).isEqualTo(1);

    time.jump(Duration.ofNanos(1)); // now older than allowed
    assertThat(tag("@s/m.py", "/m.py?sig=3")).isEqualTo("etag:\"v2\"");
    assertThat(tag("@s/m.py", "/m.py?sig=4")).isEqualTo("etag:\"v2\"");
    assertThat(storage.count("/m.py")).isEqualTo(2);
    // Tenants and locations have their own identities.
    assertThat(identities.tag("globex", "@s/m.py", url("/m.py"), Map.of()))
        .isEqualTo("etag:\"v3\"");
    assertThat(storage.count("/m.py")).isEqualTo(3);
  }

  @Test
  void concurrentCallersShareOneRequest() throws Exception {
    server.enqueue(
        new MockResponse.Builder()
            .code(206)
            .setHeader("ETag", "\"shared\"")
            .setHeader("Content-Range", "bytes 0-0/5")
            .headersDelay(300, TimeUnit.MILLISECONDS)
            .body("h")
            .build());
    server.enqueue(new MockResponse.Builder().code(500).build());
    int n = 8;
    CountDownLatch go = new CountDownLatch(1);
    ExecutorService pool = Executors.newFixedThreadPool(n);
    try {
      List<Future<String>> results = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        String path = "/c.py?sig=" + i;
        results.add(
            pool.submit(
                (Callable<String>)
                    () -> {
                      go.await();
                      return tag("@s/c.py", path);
                    }));
      }
      go.countDown();
      for (Future<String> f : results) {
        assertThat(f.get(10, TimeUnit.SECONDS)).isEqualTo("etag:\"shared\"");
      }
    } finally {
      pool.shutdownNow();
    }
    assertThat(server.getRequestCount()).isEqualTo(1);
  }

  @Test
  void aCallThatJoinsACheckBegunTooEarlyAsksAgain() throws Exception {
    CountDownLatch arrived = new CountDownLatch(1);
    CountDownLatch release = new CountDownLatch(1);
    Storage slowSecond =
        new Storage() {
          @Override
          public MockResponse dispatch(RecordedRequest request) {
            MockResponse answer = super.dispatch(request);
            if (count("/j.py") == 2) {
              arrived.countDown();
              try {
                release.await(10, TimeUnit.SECONDS);
              } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
              }
            }
            return answer;
          }
        };
    server.setDispatcher(slowSecond);
    ExecutorService checks = Executors.newSingleThreadExecutor();
    ExecutorService caller = Executors.newSingleThreadExecutor();
    identities.close();
    identities = new ImportIdentities(http, TUNING, time, time.scheduler(), checks);
    try {
      assertThat(tag("@s/j.py", "/j.py")).isEqualTo("etag:\"v1\"");
      time.advance(HALF); // the background check (v2) begins now, and hangs
      assertThat(arrived.await(10, TimeUnit.SECONDS)).isTrue();
      time.jump(Duration.ofMillis(1500)); // that check is now older than freshness allows
      AtomicReference<Thread> thread = new AtomicReference<>();
      Future<String> late =
          caller.submit(
              () -> {
                thread.set(Thread.currentThread());
                return tag("@s/j.py", "/j.py");
              });
      awaitWaiting(late, thread);
      assertThat(slowSecond.count("/j.py")).as("joined, did not ask yet").isEqualTo(2);
      release.countDown();
      assertThat(late.get(10, TimeUnit.SECONDS)).isEqualTo("etag:\"v3\"");
      assertThat(slowSecond.count("/j.py")).isEqualTo(3);
    } finally {
      release.countDown();
      caller.shutdownNow();
    }
  }

  /** Polls, with a deadline, until the caller's thread waits (for the check it joined). */
  private static void awaitWaiting(Future<?> call, AtomicReference<Thread> thread) {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (thread.get() == null || thread.get().getState() != Thread.State.WAITING) {
      assertThat(call).as("still running").isNotDone();
      assertThat(System.nanoTime()).as("the caller waits before the deadline").isLessThan(deadline);
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
    }
  }

  // ------------------------------------------------------------------ background revalidation

  @Test
  void theBackgroundPicksUpAChangedEtagWithinOneFreshnessStep() throws Exception {
    Storage storage = storage();
    storage.etag = "\"old\"";
    assertThat(tag("@s/r.py", "/r.py")).isEqualTo("etag:\"old\"");
    storage.etag = "\"new\"";
    time.advance(FRESHNESS);
    assertThat(storage.count("/r.py")).as("checked twice in the background").isEqualTo(3);
    // The new answer is in memory: no request, even with a URL nobody answers.
    assertThat(identities.tag("acme", "@s/r.py", "http://127.0.0.1:1/r.py", Map.of()))
        .isEqualTo("etag:\"new\"");
    assertThat(storage.count("/r.py")).isEqualTo(3);
  }

  @Test
  void theBackgroundAsksWithTheLatestUrlAndHeaders() throws Exception {
    storage();
    identities.tag("acme", "@s/u.py", url("/first"), Map.of("x-kiln", "a"));
    identities.tag("acme", "@s/u.py", url("/second?sig=2"), Map.of("x-kiln", "b"));
    assertThat(server.getRequestCount()).isEqualTo(1);
    assertThat(server.takeRequest(5, TimeUnit.SECONDS).getTarget()).isEqualTo("/first");
    time.advance(HALF);
    RecordedRequest background = server.takeRequest(5, TimeUnit.SECONDS);
    assertThat(background.getTarget()).isEqualTo("/second?sig=2");
    assertThat(background.getHeaders().get("x-kiln")).isEqualTo("b");
    assertThat(background.getHeaders().get("Range")).isEqualTo("bytes=0-0");
  }

  @Test
  void onlyEntriesAskedForWithinTheWindowArePolled() throws Exception {
    Storage storage = storage();
    tag("@s/a.py", "/a.py");
    tag("@s/b.py", "/b.py");
    long roundsPerFive = Duration.ofSeconds(5).dividedBy(HALF);

    time.advance(Duration.ofSeconds(5));
    assertThat(storage.count("/a.py")).isEqualTo(1 + roundsPerFive);
    tag("@s/a.py", "/a.py"); // fresh from the last round: no request, but a is in use again
    assertThat(storage.count("/a.py")).isEqualTo(1 + roundsPerFive);

    time.advance(Duration.ofSeconds(5)); // 10 s: b's window ends now
    assertThat(storage.count("/b.py")).isEqualTo(1 + 2 * roundsPerFive);
    time.advance(Duration.ofSeconds(5)); // 15 s: a's window ends now; b was dropped
    assertThat(storage.count("/b.py")).isEqualTo(1 + 2 * roundsPerFive);
    assertThat(storage.count("/a.py")).isEqualTo(1 + 3 * roundsPerFive);
    time.advance(Duration.ofSeconds(5));
    assertThat(storage.count("/a.py")).isEqualTo(1 + 3 * roundsPerFive);
    assertThat(identities.size()).as("idle entries are dropped").isZero();

    // An idle import's next request asks once, on the request path, and it is polled again.
    assertThat(tag("@s/a.py", "/a.py")).isEqualTo("etag:\"v" + (2 + 3 * roundsPerFive) + "\"");
    time.advance(HALF);
    assertThat(storage.count("/a.py")).isEqualTo(3 + 3 * roundsPerFive);
    assertThat(storage.count("/b.py")).isEqualTo(1 + 2 * roundsPerFive);
  }

  @Test
  void aFailingBackgroundCheckKeepsTheLastIdentityUntilItIsTooOld() throws Exception {
    Storage storage = storage();
    assertThat(tag("@s/f.py", "/f.py")).isEqualTo("etag:\"v1\"");
    time.advance(HALF); // v2 from the background
    storage.status = 503;
    time.advance(HALF); // fails
    assertThat(tag("@s/f.py", "/f.py")).as("v2 is half a freshness old").isEqualTo("etag:\"v2\"");
    assertThat(storage.count("/f.py")).isEqualTo(3);
    time.advance(HALF); // fails again
    time.jump(Duration.ofNanos(1)); // v2 is now too old, so the request path asks
    assertThatThrownBy(() -> tag("@s/f.py", "/f.py?X-Amz-Signature=secret"))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_UNAVAILABLE);
              assertThat(e.getMessage())
                  .isEqualTo(
                      "import @s/f.py: the presigned URL answered 503 Service Unavailable; the"
                          + " stage's storage is failing, try again later");
            });
    assertThat(storage.count("/f.py")).as("one request on the request path").isEqualTo(5);
    storage.status = 206;
    assertThat(tag("@s/f.py", "/f.py")).isEqualTo("etag:\"v6\"");
  }

  @Test
  void closingStopsTheBackground() throws Exception {
    Storage storage = storage();
    tag("@s/x.py", "/x.py");
    identities.close();
    assertThat(scheduler.isShutdown()).isTrue();
    time.advance(Duration.ofSeconds(5));
    assertThat(storage.count("/x.py")).isEqualTo(1);
  }

  @Test
  void theNumberOfTrackedEntriesIsBounded() throws Exception {
    storage();
    identities.close();
    identities =
        new ImportIdentities(
            http,
            Tuning.DEFAULT.withIdentities(FRESHNESS, WINDOW, 3),
            time,
            time.scheduler(),
            Runnable::run);
    for (int i = 0; i < 10; i++) {
      tag("@s/" + i + ".py", "/" + i + ".py");
    }
    assertThat(identities.size()).isEqualTo(3);
  }

  // ------------------------------------------------------------------ real presigned URLs

  private String presign(String key) {
    return s3.presignGet("identity-stage", key, Duration.ofDays(1));
  }

  private void upload(String key, String content) {
    s3.putObject("identity-stage", key, content.getBytes(StandardCharsets.UTF_8));
  }

  private Map<String, String> signedHost() {
    return Map.of("host", "127.0.0.1:" + s3.port());
  }

  @Test
  void aReuploadUnderTheSameKeyChangesTheIdentity() throws Exception {
    upload("imports/helper.py", "def helper(): return 1\n");
    String v1 = identities.tag("acme", "@st/helper.py", presign("imports/helper.py"), signedHost());
    assertThat(v1).startsWith("etag:");

    upload("imports/helper.py", "def helper(): return 2\n");
    time.advance(FRESHNESS); // the background asks s3proxy with the URL it has
    String v2 = identities.tag("acme", "@st/helper.py", "http://127.0.0.1:1/never", Map.of());
    assertThat(v2).as("from memory, fresh").startsWith("etag:").isNotEqualTo(v1);

    upload("imports/helper.py", "def helper(): return 3\n");
    time.jump(FRESHNESS.multipliedBy(2)); // the background fell behind: the request path asks
    String v3 = identities.tag("acme", "@st/helper.py", presign("imports/helper.py"), signedHost());
    assertThat(v3).startsWith("etag:").isNotEqualTo(v2).isNotEqualTo(v1);
  }

  @Test
  void anEmptyStagedFileHasAnIdentity() throws Exception {
    upload("imports/__init__.py", "");
    String empty =
        identities.tag("acme", "@st/__init__.py", presign("imports/__init__.py"), Map.of());
    assertThat(empty).startsWith("etag:");
  }

  @Test
  void aMissingFileIs404NamingTheLocationNotTheUrl() {
    String url = presign("imports/deleted.py");
    assertThatThrownBy(() -> identities.tag("acme", "@st/deleted.py", url, Map.of()))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_FAILED);
              assertThat(e.getMessage())
                  .startsWith("import @st/deleted.py: the presigned URL answered 404 Not Found")
                  .contains("NoSuchKey")
                  .contains("no longer in the stage")
                  .doesNotContain("X-Amz-Signature")
                  .doesNotContain("127.0.0.1");
            });
  }

  @Test
  void aRefusedSignatureIs403NamingTheLocationNotTheUrl() {
    upload("imports/secret.py", "x = 1");
    String url =
        presign("imports/secret.py").replaceAll("X-Amz-Signature=[0-9a-f]+", "X-Amz-Signature=00");
    assertThatThrownBy(() -> identities.tag("acme", "@st/secret.py", url, Map.of()))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_FAILED);
              assertThat(e.getMessage())
                  .startsWith("import @st/secret.py: the presigned URL answered 403 Forbidden")
                  .contains("(expired or revoked?)")
                  .doesNotContain("X-Amz-Signature");
            });
  }

  // ------------------------------------------------------------------ failures on the request path

  @Test
  void aServerErrorIsUnavailableAfterOneRequest() {
    server.enqueue(new MockResponse.Builder().code(503).build());
    assertThatThrownBy(() -> tag("@s/e.py", "/e.py?X-Amz-Signature=secret"))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_UNAVAILABLE);
              assertThat(e.getMessage())
                  .startsWith("import @s/e.py: the presigned URL answered 503 Service Unavailable")
                  .doesNotContain("secret");
            });
    assertThat(server.getRequestCount()).isEqualTo(1);
  }

  @Test
  void anUnreachableHostIsUnavailableNamingTheHostNotTheUrl() throws Exception {
    int port;
    try (var s = new java.net.ServerSocket(0)) {
      port = s.getLocalPort(); // closed again: connections are refused
    }
    String url = "http://127.0.0.1:" + port + "/c.py?X-Amz-Signature=secret";
    assertThatThrownBy(() -> identities.tag("acme", "@s/c.py", url, Map.of()))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_UNAVAILABLE);
              assertThat(e.getMessage())
                  .startsWith("import @s/c.py: could not ask 127.0.0.1:" + port + " whether")
                  .endsWith("check that Kiln can reach the stage's storage")
                  .doesNotContain("secret");
            });
  }

  @Test
  void aMalformedUrlIsAPermanentError() {
    assertThatThrownBy(() -> identities.tag("acme", "@s/d.py", "not a url", Map.of()))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> {
              assertThat(e.code()).isEqualTo(ErrorCode.IMPORT_FAILED);
              assertThat(e.getMessage())
                  .startsWith("import @s/d.py:")
                  .contains("not an http(s) URL");
            });
  }

  // ------------------------------------------------------------------ the cache, and the hot path

  @Test
  void theCacheOffersIdentitiesAndTenThousandFreshTagsStayInMemory(@TempDir Path dir)
      throws Exception {
    Storage storage = storage();
    storage.etag = "\"hot\"";
    try (ArtifactCache cache =
        ArtifactCache.open(CacheConfig.defaults(dir), new SimpleMeterRegistry())) {
      ImportIdentities real = cache.identities(); // system ticker, its own scheduler, 1 s
      String url = url("/hot.py?X-Amz-Signature=abc");
      assertThat(real.tag("acme", "@s/hot.py", url, Map.of())).isEqualTo("etag:\"hot\"");
      int n = 10_000;
      long[] nanos = new long[n];
      long start = System.nanoTime();
      for (int round = 0; round < 2; round++) { // the first round warms the JIT up
        for (int i = 0; i < n; i++) {
          long t0 = System.nanoTime();
          String tag = real.tag("acme", "@s/hot.py", url, Map.of());
          nanos[i] = System.nanoTime() - t0;
          assertThat(tag).isEqualTo("etag:\"hot\"");
        }
      }
      long elapsed = System.nanoTime() - start;
      Arrays.sort(nanos);
      double p50 = nanos[n / 2] / 1000.0;
      double p99 = nanos[n * 99 / 100] / 1000.0;
      System.out.printf(
          "ImportIdentities.tag, fresh entry, %d calls after %d warm-up: p50 %.2f us,"
              + " p99 %.2f us, max %.1f us; %d requests in %d ms%n",
          n,
          n,
          p50,
          p99,
          nanos[n - 1] / 1000.0,
          storage.count("/hot.py"),
          TimeUnit.NANOSECONDS.toMillis(elapsed));
      // Requests come from the first call and the background rounds (every 500 ms), not calls.
      long rounds = elapsed / Duration.ofMillis(500).toNanos() + 1;
      assertThat(storage.count("/hot.py")).isLessThanOrEqualTo((int) (1 + 2 * rounds));
      assertThat(p99).as("p99 in microseconds, budget 5 ms").isLessThan(5_000);
    }
  }
}
