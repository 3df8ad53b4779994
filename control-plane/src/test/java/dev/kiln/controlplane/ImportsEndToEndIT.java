package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.definition.QueryScripts;
import io.grpc.StatusRuntimeException;
import io.micrometer.core.instrument.Measurement;
import io.micrometer.core.instrument.Meter;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.zip.ZipEntry;
import java.util.zip.ZipOutputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;
import org.apache.commons.compress.compressors.gzip.GzipCompressorOutputStream;
import org.gaul.s3proxy.S3Proxy;
import org.gaul.s3proxy.auth.AuthenticationType;
import org.gaul.s3proxy.nio2blob.TransientNio2BlobStore;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3Configuration;
import software.amazon.awssdk.services.s3.presigner.S3Presigner;

/**
 * Staged imports end to end, as Databend sends them: files in a real S3 server (s3proxy in this
 * JVM), presigned GET URLs signed by the AWS SDK (real signatures, real expiry), ApplyUdfResource
 * with those imports, and a UDF in the gVisor sandbox that reads them the way databend-wire.md §5
 * describes: one import directory flattened by basename (the last import wins), {@code
 * sys._xoptions["databend_import_directory"]}, the directory and each {@code .zip} on {@code
 * sys.path}, archives left as files.
 */
class ImportsEndToEndIT {
  private static final String BUCKET = "stage";
  private static final String ACCESS = "stage-access";
  private static final String SECRET = "stage-secret";
  @TempDir static Path dataDir;
  static S3Proxy s3proxy;
  static S3Client s3;
  static S3Presigner presigner;
  static RunningKiln kiln;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  @BeforeAll
  static void start() throws Exception {
    s3proxy =
        S3Proxy.builder()
            .blobStore(new TransientNio2BlobStore())
            .endpoint(URI.create("http://127.0.0.1:0"))
            .awsAuthentication(AuthenticationType.AWS_V2_OR_V4, ACCESS, SECRET)
            .build();
    s3proxy.start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!"STARTED".equals(s3proxy.getState())) {
      assertThat(System.nanoTime()).as("s3proxy started in time").isLessThan(deadline);
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(5));
    }
    URI endpoint = URI.create("http://127.0.0.1:" + s3proxy.getPort());
    var credentials = StaticCredentialsProvider.create(AwsBasicCredentials.create(ACCESS, SECRET));
    s3 =
        S3Client.builder()
            .endpointOverride(endpoint)
            .region(Region.US_EAST_1)
            .forcePathStyle(true)
            .credentialsProvider(credentials)
            .httpClient(Apache5HttpClient.builder().build())
            .build();
    presigner =
        S3Presigner.builder()
            .endpointOverride(endpoint)
            .region(Region.US_EAST_1)
            .serviceConfiguration(S3Configuration.builder().pathStyleAccessEnabled(true).build())
            .credentialsProvider(credentials)
            .build();
    s3.createBucket(b -> b.bucket(BUCKET));
    put("udf/imports/greeting.txt", "hello from the stage".getBytes(StandardCharsets.UTF_8));
    put("udf/imports/plain_mod.py", "VALUE = 7\n".getBytes(StandardCharsets.UTF_8));
    put(
        "udf/imports/helpers.zip",
        zip("helpers_mod.py", "def shout(s):\n    return s.upper() + '!'\n"));
    put("udf/imports/data.tar.gz", tarGz("words.txt", "alpha\nbeta\ngamma\n"));
    put("a/config.txt", "from a".getBytes(StandardCharsets.UTF_8));
    put("b/config.txt", "from b".getBytes(StandardCharsets.UTF_8));

    kiln = RunningKiln.start(dataDir);
  }

  @AfterAll
  static void stop() throws Exception {
    if (kiln != null) {
      kiln.close();
    }
    if (presigner != null) {
      presigner.close();
    }
    if (s3 != null) {
      s3.close();
    }
    if (s3proxy != null) {
      s3proxy.stop();
    }
  }

  private static void put(String key, byte[] bytes) {
    s3.putObject(b -> b.bucket(BUCKET).key(key), RequestBody.fromBytes(bytes));
  }

  /** An import as Databend sends it: a fresh presigned URL, the object's ETag as the tag. */
  private static DatabendClient.Import stageImport(String key, Duration validFor) {
    String etag = s3.headObject(b -> b.bucket(BUCKET).key(key)).eTag();
    return new DatabendClient.Import("@" + BUCKET + "/" + key, presign(key, validFor), etag);
  }

  /** A presigned GET URL of the staged file {@code key}, valid for {@code validFor}. */
  private static String presign(String key, Duration validFor) {
    return presigner
        .presignGetObject(
            r -> r.signatureDuration(validFor).getObjectRequest(g -> g.bucket(BUCKET).key(key)))
        .url()
        .toString();
  }

  private static List<DatabendClient.Import> imports(Duration validFor, String... keys) {
    List<DatabendClient.Import> out = new ArrayList<>();
    for (String k : keys) {
      out.add(stageImport(k, validFor));
    }
    return out;
  }

  /** Applies a UDF of one VARCHAR NULL argument with these imports, as Databend does. */
  private static DatabendClient.Resource apply(
      String handler, String code, List<DatabendClient.Import> imports) {
    String spec =
        KilnTestSupport.spec(
            handler,
            List.of("VARCHAR NULL"),
            "VARCHAR NULL",
            imports.stream().map(DatabendClient.Import::location).toList(),
            List.of(),
            code);
    return kiln.api().apply("acme", spec, imports, Duration.ofSeconds(5));
  }

  /** Asserts that applying a UDF with this one import fails naming its location and status. */
  private static void assertImportFails(String handler, DatabendClient.Import i, String status) {
    List<DatabendClient.Import> imports = List.of(i);
    String code = "def " + handler + "(x):\n    return x\n";
    assertThatThrownBy(() -> apply(handler, code, imports))
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e ->
                assertThat(e.getStatus().getDescription()).contains(i.location()).contains(status));
  }

  private static final String CODE =
      """
      import os, sys, tarfile
      import helpers_mod
      import plain_mod

      def HANDLER(x):
          d = sys._xoptions["databend_import_directory"]
          with open(os.path.join(d, "greeting.txt")) as f:
              greeting = f.read()
          with tarfile.open(os.path.join(d, "data.tar.gz")) as t:
              words = t.extractfile("words.txt").read().decode().split()
          with open(os.path.join(d, "config.txt")) as f:
              config = f.read()
          files = sorted(f for f in os.listdir(d) if os.path.isfile(os.path.join(d, f)))
          return "|".join([greeting, helpers_mod.shout(x), str(plain_mod.VALUE),
                           ",".join(words), config, ",".join(files)])
      """;

  private static final String[] ALL = {
    "udf/imports/greeting.txt",
    "udf/imports/plain_mod.py",
    "udf/imports/helpers.zip",
    "udf/imports/data.tar.gz",
    "a/config.txt",
    "b/config.txt"
  };

  private String callOne(DatabendClient.Resource r, String handler, String arg) throws Exception {
    List<List<Object>> rows =
        KilnTestSupport.call(
            allocator, r, "acme", handler, List.of("VARCHAR NULL"), "[[\"" + arg + "\"]]");
    return String.valueOf(rows.get(0).get(0));
  }

  @Test
  void aUdfReadsImportedFilesAModuleFromAZipAndAnArchive() throws Exception {
    List<DatabendClient.Import> imports = imports(Duration.ofDays(7), ALL);
    String handler = "describe";
    DatabendClient.Resource r = apply(handler, CODE.replace("HANDLER", handler), imports);
    assertThat(callOne(r, handler, "kiln"))
        .isEqualTo(
            "hello from the stage|KILN!|7|alpha,beta,gamma|from b|"
                + "config.txt,data.tar.gz,greeting.txt,helpers.zip,plain_mod.py");
  }

  /**
   * The script Databend Query renders for a UDF of one VARCHAR argument with these staged files as
   * imports: presigned URLs and the host header its presigner returns, no tags.
   */
  private static String script(String handler, String code, String... keys) {
    QueryScripts.Udf udf =
        QueryScripts.udf(code, handler).inputs("VARCHAR NULL").result("VARCHAR NULL");
    for (String k : keys) {
      udf.addImport(
          "@" + BUCKET + "/" + k,
          presign(k, Duration.ofDays(7)),
          java.util.Map.of("host", "127.0.0.1:" + s3proxy.getPort()));
    }
    return udf.render();
  }

  private static DatabendClient.Resource createWorker(String name, String script) {
    return kiln.api().createWorker("acme", name, script, Duration.ofSeconds(5));
  }

  @Test
  void theSameImportsThroughCreateWorkerAsTodaysQuerySendsThem() throws Exception {
    String handler = "described";
    DatabendClient.Resource r =
        createWorker(handler, script(handler, CODE.replace("HANDLER", handler), ALL));
    assertThat(callOne(r, handler, "kiln"))
        .isEqualTo(
            "hello from the stage|KILN!|7|alpha,beta,gamma|from b|"
                + "config.txt,data.tar.gz,greeting.txt,helpers.zip,plain_mod.py");
    // Query asks again on every query, with new URLs: the same resource, from memory.
    DatabendClient.Resource again =
        createWorker(handler, script(handler, CODE.replace("HANDLER", handler), ALL));
    assertThat(again.key()).isEqualTo(r.key());
  }

  @Test
  void anImportReuploadedUnderTheSameNameIsUsedByTheNextQueries() throws Exception {
    String key = "udf/imports/version.txt";
    put(key, "v1".getBytes(StandardCharsets.UTF_8));
    String handler = "version";
    String code =
        """
        import os, sys
        def version(x):
            with open(os.path.join(sys._xoptions["databend_import_directory"], "version.txt")) as f:
                return f.read()
        """;
    DatabendClient.Resource first = createWorker(handler, script(handler, code, key));
    assertThat(callOne(first, handler, "x")).isEqualTo("v1");

    put(key, "v2".getBytes(StandardCharsets.UTF_8));
    long uploaded = System.nanoTime();
    // Query asks on every query; poll like a user who runs it again, with a deadline.
    String seen = "v1";
    DatabendClient.Resource latest = first;
    while (!seen.equals("v2")) {
      assertThat(System.nanoTime() - uploaded)
          .as("the re-uploaded file is used within 5 s")
          .isLessThan(TimeUnit.SECONDS.toNanos(5));
      latest = createWorker(handler, script(handler, code, key));
      seen = callOne(latest, handler, "x");
    }
    System.out.printf(
        "re-uploaded import first used %d ms after the upload%n",
        TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - uploaded));
    assertThat(latest.key()).as("new content, new resource").isNotEqualTo(first.key());
  }

  @Test
  void anotherApplyWithNewUrlsAndTheSameTagsDownloadsNothing() throws Exception {
    List<DatabendClient.Import> first = imports(Duration.ofDays(7), ALL);
    DatabendClient.Resource warm = apply("warm", CODE.replace("HANDLER", "warm"), first);
    assertThat(callOne(warm, "warm", "a")).startsWith("hello from the stage|A!");
    double downloads = meter("kiln.cache.import.downloads");
    double avoided = meter("kiln.cache.import.avoided");

    // A new UDF over the same staged files: Databend signs new URLs, the tags are unchanged.
    // The config imports come in the other order this time, so a/config.txt wins.
    List<DatabendClient.Import> again =
        imports(
            Duration.ofDays(6), // so the URLs differ even when signed within the same second
            "udf/imports/greeting.txt",
            "udf/imports/plain_mod.py",
            "udf/imports/helpers.zip",
            "udf/imports/data.tar.gz",
            "b/config.txt",
            "a/config.txt");
    assertThat(again.get(0).url()).isNotEqualTo(first.get(0).url());
    DatabendClient.Resource r = apply("again", CODE.replace("HANDLER", "again"), again);
    assertThat(callOne(r, "again", "b")).contains("|B!|").contains("|from a|");
    assertThat(meter("kiln.cache.import.downloads")).as("downloads").isEqualTo(downloads);
    assertThat(meter("kiln.cache.import.avoided") - avoided)
        .as("imports answered from the cache")
        .isGreaterThanOrEqualTo(again.size());
  }

  @Test
  void aMissingFileFailsApplyWithItsLocationAndStatus() {
    String key = "udf/imports/missing.py";
    assertImportFails(
        "m",
        new DatabendClient.Import(
            "@stage/" + key, presign(key, Duration.ofDays(1)), "\"0123456789abcdef\""),
        "404");
  }

  @Test
  void anExpiredUrlFailsApplyWithItsLocationAndStatus() throws Exception {
    put("udf/imports/late.py", "LATE = 1\n".getBytes(StandardCharsets.UTF_8));
    DatabendClient.Import late = stageImport("udf/imports/late.py", Duration.ofSeconds(1));
    awaitStatus(late.url(), 403);
    assertImportFails("l", late, "403");
  }

  /** The sum of a meter's measurements on the server's registry; fails when it is missing. */
  private static double meter(String name) {
    Collection<Meter> meters = kiln.server().meters().find(name).meters();
    assertThat(meters).as("meter %s registered", name).isNotEmpty();
    double sum = 0;
    for (Meter m : meters) {
      for (Measurement v : m.measure()) {
        sum += v.getValue();
      }
    }
    return sum;
  }

  /** Polls until the URL answers {@code status} (its expiry passed), with a deadline. */
  private static void awaitStatus(String url, int status) throws Exception {
    HttpClient http = HttpClient.newHttpClient();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(15);
    while (http.send(
                HttpRequest.newBuilder(URI.create(url)).build(),
                HttpResponse.BodyHandlers.discarding())
            .statusCode()
        != status) {
      assertThat(System.nanoTime()).as("URL answers %d in time", status).isLessThan(deadline);
      LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(100));
    }
  }

  private static byte[] zip(String name, String content) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (ZipOutputStream z = new ZipOutputStream(bytes)) {
      z.putNextEntry(new ZipEntry(name));
      z.write(content.getBytes(StandardCharsets.UTF_8));
      z.closeEntry();
    }
    return bytes.toByteArray();
  }

  private static byte[] tarGz(String name, String content) throws IOException {
    byte[] data = content.getBytes(StandardCharsets.UTF_8);
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (TarArchiveOutputStream tar =
        new TarArchiveOutputStream(new GzipCompressorOutputStream(bytes))) {
      TarArchiveEntry e = new TarArchiveEntry(name);
      e.setSize(data.length);
      tar.putArchiveEntry(e);
      tar.write(data);
      tar.closeArchiveEntry();
    }
    return bytes.toByteArray();
  }
}
