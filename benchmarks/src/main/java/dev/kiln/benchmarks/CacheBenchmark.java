package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpServer;
import dev.kiln.cache.ArtifactCache;
import dev.kiln.cache.CacheConfig;
import dev.kiln.cache.Digest;
import dev.kiln.cache.S3Settings;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import org.gaul.s3proxy.S3Proxy;
import org.gaul.s3proxy.auth.AuthenticationType;
import org.gaul.s3proxy.nio2blob.TransientNio2BlobStore;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;

/**
 * The artifact cache on this machine: hit latency per tier, and a large staged import fetched by
 * Kiln's {@code ImportFetcher} against {@code curl -o} of the same URL in the same run.
 *
 * <ul>
 *   <li>memory: {@code ArtifactCache.bytes} of a blob already in memory;
 *   <li>local: {@code ArtifactCache.file} of a blob on local disk (RocksDB lookup, stat, access
 *       update);
 *   <li>remote: {@code ArtifactCache.file} of a blob only in S3 (s3proxy in this JVM, in-memory
 *       store): GET, hash, write, atomic move, index — each blob read once by a second cache;
 *   <li>import: an N MiB file served by a JDK HTTP server from disk, fetched by {@code
 *       ImportFetcher} (stream to disk while hashing, move into the cache) and by {@code curl -sS
 *       -o FILE} (stream to disk), alternating, after one unrecorded warm-up run each (a server's
 *       JIT is warm; curl is native), several runs each ({@code sha256sum} of curl's file is timed
 *       separately: what verifying it would add); then the same import again with a new URL and the
 *       same tag (answered from the cache).
 * </ul>
 *
 * <p>Run: {@code bin/bench cache [import-MiB=1024] [runs=3]}. Writes {@code
 * benchmarks/target/results/cache.json}.
 */
public final class CacheBenchmark {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String ACCESS = "bench-access";
  private static final String SECRET = "bench-secret";

  private CacheBenchmark() {}

  public static void main(String[] args) throws Exception {
    int importMiB = args.length > 0 ? Integer.parseInt(args[0]) : 1024;
    int runs = args.length > 1 ? Integer.parseInt(args[1]) : 3;
    Path work = Files.createTempDirectory("kiln-cache-bench-");
    ObjectNode report = JSON.createObjectNode();
    report.put("machine_cpus", Runtime.getRuntime().availableProcessors());
    try {
      ArrayNode tiers = report.putArray("hit_latency");
      for (int size : new int[] {4 << 10, 1 << 20}) {
        hitLatency(work.resolve("tiers-" + size), size, tiers);
      }
      report.set("import", importThroughput(work.resolve("import"), importMiB, runs));
    } finally {
      deleteTree(work);
    }
    print(report);
    Path out = Path.of("benchmarks/target/results/cache.json");
    Files.createDirectories(out.getParent());
    JSON.writerWithDefaultPrettyPrinter().writeValue(out.toFile(), report);
    System.out.println("wrote " + out.toAbsolutePath());
  }

  // ------------------------------------------------------------------ hit latency per tier

  private static void hitLatency(Path dir, int size, ArrayNode out) throws Exception {
    S3Proxy s3 =
        S3Proxy.builder()
            .blobStore(new TransientNio2BlobStore())
            .endpoint(URI.create("http://127.0.0.1:0"))
            .awsAuthentication(AuthenticationType.AWS_V2_OR_V4, ACCESS, SECRET)
            .build();
    s3.start();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
    while (!"STARTED".equals(s3.getState())) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("s3proxy did not start");
      }
      TimeUnit.MILLISECONDS.sleep(5);
    }
    URI endpoint = URI.create("http://127.0.0.1:" + s3.getPort());
    try (S3Client client =
        S3Client.builder()
            .endpointOverride(endpoint)
            .region(Region.US_EAST_1)
            .forcePathStyle(true)
            .credentialsProvider(
                StaticCredentialsProvider.create(AwsBasicCredentials.create(ACCESS, SECRET)))
            .httpClient(Apache5HttpClient.builder().build())
            .build()) {
      client.createBucket(b -> b.bucket("bench"));
    }
    S3Settings remote =
        new S3Settings(
            "bench",
            "",
            Optional.of(endpoint),
            "us-east-1",
            true,
            Optional.of(ACCESS),
            Optional.of(SECRET));
    int remoteBlobs = size >= 1 << 20 ? 100 : 300;
    int warm = size >= 1 << 20 ? 2_000 : 20_000;
    int measured = size >= 1 << 20 ? 5_000 : 100_000;
    Random random = new Random(size);
    List<Digest> digests = new ArrayList<>();
    try {
      // Node A writes blobs (they go to S3 in the background).
      try (ArtifactCache a =
          ArtifactCache.open(config(dir.resolve("a"), remote), new SimpleMeterRegistry())) {
        for (int i = 0; i < remoteBlobs; i++) {
          byte[] b = new byte[size];
          random.nextBytes(b);
          digests.add(a.put(new ByteArrayInputStream(b)));
        }
        if (!a.awaitRemoteWrites(Duration.ofMinutes(5))) {
          throw new IllegalStateException("remote writes did not finish");
        }
      }
      // Node B has nothing local: each first read is a remote hit, then local, then memory.
      try (ArtifactCache b =
          ArtifactCache.open(config(dir.resolve("b"), remote), new SimpleMeterRegistry())) {
        List<Double> remoteMs = new ArrayList<>();
        int warmRemote = digests.size() / 5; // the first reads warm up the JIT and connections
        for (int i = 0; i < digests.size(); i++) {
          long t0 = System.nanoTime();
          b.file(digests.get(i)).orElseThrow();
          if (i >= warmRemote) {
            remoteMs.add(ms(System.nanoTime() - t0));
          }
        }
        Digest hot = digests.get(0);
        List<Double> localMs = time(warm, measured, () -> b.file(hot).orElseThrow());
        b.bytes(hot).orElseThrow(); // promote into memory
        List<Double> memoryMs = time(warm, measured, () -> b.bytes(hot).orElseThrow());
        out.add(row("memory", size, memoryMs, "ArtifactCache.bytes (returns a copy)"));
        out.add(row("local", size, localMs, "ArtifactCache.file"));
        out.add(row("remote", size, remoteMs, "ArtifactCache.file, s3proxy on loopback"));
      }
    } finally {
      s3.stop();
    }
  }

  private interface Op {
    void run() throws Exception;
  }

  private static List<Double> time(int warm, int measured, Op op) throws Exception {
    for (int i = 0; i < warm; i++) {
      op.run();
    }
    List<Double> ms = new ArrayList<>(measured);
    for (int i = 0; i < measured; i++) {
      long t0 = System.nanoTime();
      op.run();
      ms.add(ms(System.nanoTime() - t0));
    }
    return ms;
  }

  private static ObjectNode row(String tier, int size, List<Double> ms, String what) {
    ObjectNode n = JSON.createObjectNode();
    n.put("tier", tier);
    n.put("blob_bytes", size);
    n.put("samples", ms.size());
    n.put("p50_us", 1000 * percentile(ms, 50));
    n.put("p99_us", 1000 * percentile(ms, 99));
    n.put("mean_us", 1000 * ms.stream().mapToDouble(Double::doubleValue).average().orElse(0));
    n.put("what", what);
    return n;
  }

  private static CacheConfig config(Path dir, S3Settings remote) {
    return new CacheConfig(
        dir,
        CacheConfig.DEFAULT_MEMORY_MAX_BYTES,
        CacheConfig.DEFAULT_MEMORY_MAX_BLOB_BYTES,
        CacheConfig.DEFAULT_LOCAL_MAX_BYTES,
        Optional.of(remote));
  }

  // ------------------------------------------------------------------ import vs curl

  private static ObjectNode importThroughput(Path dir, int mib, int runs) throws Exception {
    Files.createDirectories(dir);
    Path source = dir.resolve("big.bin");
    byte[] block = new byte[1 << 20];
    new Random(1).nextBytes(block);
    MessageDigest sha = Digest.newSha256();
    try (OutputStream out = Files.newOutputStream(source)) {
      for (int i = 0; i < mib; i++) {
        block[0] = (byte) i;
        block[1] = (byte) (i >> 8);
        out.write(block);
        sha.update(block);
      }
    }
    Digest expected = Digest.fromSha(sha);
    long bytes = Files.size(source);
    HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 16);
    ExecutorService serverThreads = Executors.newFixedThreadPool(2);
    server.setExecutor(serverThreads);
    server.createContext(
        "/",
        ex -> {
          ex.sendResponseHeaders(200, bytes);
          try (OutputStream out = ex.getResponseBody()) {
            Files.copy(source, out);
          }
        });
    server.start();
    String base = "http://127.0.0.1:" + server.getAddress().getPort() + "/stage/big.bin";
    List<Double> kilnMs = new ArrayList<>();
    List<Double> curlMs = new ArrayList<>();
    List<Double> sha256sumMs = new ArrayList<>();
    double knownMs;
    try {
      // Run -1 warms up the JIT (a server is warm; curl is native code) and is not recorded.
      for (int run = -1; run < runs; run++) {
        for (String who : run % 2 == 0 ? List.of("kiln", "curl") : List.of("curl", "kiln")) {
          Path target = dir.resolve(who + "-" + run);
          warmPageCache(source);
          if (who.equals("kiln")) {
            try (ArtifactCache cache =
                ArtifactCache.open(CacheConfig.defaults(target), new SimpleMeterRegistry())) {
              long t0 = System.nanoTime();
              Digest d =
                  cache
                      .imports()
                      .fetch("bench", "@stage/big.bin", "run-" + run, base + "?r=" + run);
              if (run >= 0) {
                kilnMs.add(ms(System.nanoTime() - t0));
              }
              if (!d.equals(expected)) {
                throw new IllegalStateException("Kiln fetched " + d + ", expected " + expected);
              }
            }
          } else {
            long t0 = System.nanoTime();
            Process p =
                new ProcessBuilder("curl", "-sS", "--fail", "-o", target.toString(), base)
                    .inheritIO()
                    .start();
            if (!p.waitFor(10, TimeUnit.MINUTES) || p.exitValue() != 0) {
              throw new IllegalStateException("curl failed");
            }
            if (run >= 0) {
              curlMs.add(ms(System.nanoTime() - t0));
            }
            if (Files.size(target) != bytes) {
              throw new IllegalStateException("curl wrote " + Files.size(target) + " bytes");
            }
            if (run >= 0) {
              // What verifying the download would add to curl (Kiln hashes while it downloads).
              long t1 = System.nanoTime();
              Process sum = new ProcessBuilder("sha256sum", target.toString()).start();
              String line = new String(sum.getInputStream().readAllBytes()).trim();
              if (!sum.waitFor(10, TimeUnit.MINUTES) || !line.startsWith(expected.hex())) {
                throw new IllegalStateException("sha256sum: " + line);
              }
              sha256sumMs.add(ms(System.nanoTime() - t1));
            }
          }
          deleteTree(target);
        }
      }
      // Asking again with a new URL and the same tag: no download at all.
      try (ArtifactCache cache =
          ArtifactCache.open(
              CacheConfig.defaults(dir.resolve("known")), new SimpleMeterRegistry())) {
        cache.imports().fetch("bench", "@stage/big.bin", "known", base);
        long t0 = System.nanoTime();
        int n = 1000;
        for (int i = 0; i < n; i++) {
          cache.imports().fetch("bench", "@stage/big.bin", "known", base + "?fresh=" + i);
        }
        knownMs = ms(System.nanoTime() - t0) / n;
      }
    } finally {
      server.stop(0);
      serverThreads.shutdownNow();
    }
    ObjectNode n = JSON.createObjectNode();
    n.put("bytes", bytes);
    n.put("runs", runs);
    n.put("kiln_median_ms", percentile(kilnMs, 50));
    n.put("kiln_best_ms", percentile(kilnMs, 0));
    n.put("curl_median_ms", percentile(curlMs, 50));
    n.put("curl_best_ms", percentile(curlMs, 0));
    n.put("sha256sum_median_ms", percentile(sha256sumMs, 50));
    n.put("kiln_median_mib_s", mib / (percentile(kilnMs, 50) / 1000));
    n.put("curl_median_mib_s", mib / (percentile(curlMs, 50) / 1000));
    n.put("known_import_fetch_ms", knownMs);
    n.putPOJO("kiln_ms", kilnMs);
    n.putPOJO("curl_ms", curlMs);
    return n;
  }

  /** Best effort: keep the source file's pages warm for both, so neither pays for the disk. */
  private static void warmPageCache(Path source) throws IOException {
    try (var in = Files.newInputStream(source)) {
      in.transferTo(OutputStream.nullOutputStream());
    }
  }

  // ------------------------------------------------------------------ output

  private static void print(ObjectNode report) {
    System.out.println();
    System.out.println("Cache hit latency per tier (this machine, one thread)");
    System.out.printf(
        "%-8s %10s %10s %10s %10s  %s%n", "tier", "blob", "p50", "p99", "mean", "operation");
    for (var r : report.get("hit_latency")) {
      System.out.printf(
          "%-8s %10s %8.1fus %8.1fus %8.1fus  %s%n",
          r.get("tier").asText(),
          r.get("blob_bytes").asInt() >= 1 << 20
              ? (r.get("blob_bytes").asInt() >> 20) + " MiB"
              : (r.get("blob_bytes").asInt() >> 10) + " KiB",
          r.get("p50_us").asDouble(),
          r.get("p99_us").asDouble(),
          r.get("mean_us").asDouble(),
          r.get("what").asText());
    }
    var imp = report.get("import");
    System.out.printf(
        "%nImport of %d MiB over loopback HTTP, %d runs each (median, best):%n",
        imp.get("bytes").asLong() >> 20, imp.get("runs").asInt());
    System.out.printf(
        "  Kiln ImportFetcher (stream + sha256 + atomic move): %.0f ms, %.0f ms  = %.0f MiB/s%n",
        imp.get("kiln_median_ms").asDouble(),
        imp.get("kiln_best_ms").asDouble(),
        imp.get("kiln_median_mib_s").asDouble());
    System.out.printf(
        "  curl -sS -o FILE:                                   %.0f ms, %.0f ms  = %.0f MiB/s%n",
        imp.get("curl_median_ms").asDouble(),
        imp.get("curl_best_ms").asDouble(),
        imp.get("curl_median_mib_s").asDouble());
    System.out.printf(
        "  (sha256sum of curl's file afterwards, to verify it:  %.0f ms)%n",
        imp.get("sha256sum_median_ms").asDouble());
    System.out.printf(
        "  the same import again, new URL, same tag (cache): %.3f ms%n",
        imp.get("known_import_fetch_ms").asDouble());
  }

  private static double ms(long nanos) {
    return nanos / 1e6;
  }

  /** Nearest-rank percentile (0 = min, 100 = max). */
  private static double percentile(List<Double> values, double p) {
    List<Double> sorted = new ArrayList<>(values);
    sorted.sort(Comparator.naturalOrder());
    int rank = (int) Math.ceil(p / 100.0 * sorted.size());
    return sorted.get(Math.max(0, Math.min(sorted.size() - 1, rank - 1)));
  }

  private static void deleteTree(Path dir) throws IOException {
    if (!Files.exists(dir)) {
      return;
    }
    try (var paths = Files.walk(dir)) {
      paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }
}
