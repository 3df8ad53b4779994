package dev.kiln.cache;

import java.net.URI;
import java.time.Duration;
import java.util.Optional;
import org.gaul.s3proxy.S3Proxy;
import org.gaul.s3proxy.auth.AuthenticationType;
import org.gaul.s3proxy.blobstore.BlobStore;
import org.gaul.s3proxy.nio2blob.TransientNio2BlobStore;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3Configuration;
import software.amazon.awssdk.services.s3.presigner.S3Presigner;

/**
 * A real S3 server in the test JVM: s3proxy on a free port, with an in-memory store that outlives a
 * {@link #stop()} so that {@link #restart()} (on the same port) brings the same objects back.
 */
final class S3ProxyServer implements AutoCloseable {
  static final String ACCESS_KEY = "kiln-test-access";
  static final String SECRET_KEY = "kiln-test-secret-key";
  static final String REGION = "us-east-1";

  private final BlobStore store = new TransientNio2BlobStore();
  private S3Proxy proxy;
  private int port;
  private boolean running;
  private S3Client client;
  private S3Presigner presigner;

  private static S3ProxyServer shared;

  /**
   * One server for the test classes that never stop it (each uses its own buckets), started once
   * per test JVM and stopped when it exits: starting s3proxy costs seconds.
   */
  static synchronized S3ProxyServer shared() throws Exception {
    if (shared == null) {
      S3ProxyServer s = start();
      Runtime.getRuntime()
          .addShutdownHook(
              new Thread(
                  () -> {
                    try {
                      s.close();
                    } catch (Exception e) {
                      // The JVM is exiting anyway.
                    }
                  }));
      shared = s;
    }
    return shared;
  }

  /** A server of the caller's own, which it may stop and restart. */
  static S3ProxyServer start() throws Exception {
    S3ProxyServer s = new S3ProxyServer();
    s.startOn(0);
    return s;
  }

  private void startOn(int wanted) throws Exception {
    proxy =
        S3Proxy.builder()
            .blobStore(store)
            .endpoint(URI.create("http://127.0.0.1:" + wanted))
            .awsAuthentication(AuthenticationType.AWS_V2_OR_V4, ACCESS_KEY, SECRET_KEY)
            .build();
    proxy.start();
    long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
    while (!"STARTED".equals(proxy.getState())) {
      if (System.nanoTime() > deadline) {
        throw new IllegalStateException("s3proxy did not start: " + proxy.getState());
      }
      java.util.concurrent.locks.LockSupport.parkNanos(5_000_000);
    }
    port = proxy.getPort();
    running = true;
  }

  URI endpoint() {
    return URI.create("http://127.0.0.1:" + port);
  }

  int port() {
    return port;
  }

  /** Settings of a remote tier in {@code bucket} (created if missing). */
  S3Settings settings(String bucket, String prefix) {
    createBucket(bucket);
    return new S3Settings(
        bucket,
        prefix,
        Optional.of(endpoint()),
        REGION,
        true,
        Optional.of(ACCESS_KEY),
        Optional.of(SECRET_KEY));
  }

  void createBucket(String bucket) {
    if (!client().listBuckets().buckets().stream().anyMatch(b -> b.name().equals(bucket))) {
      client().createBucket(b -> b.bucket(bucket));
    }
  }

  void putObject(String bucket, String key, byte[] bytes) {
    client().putObject(b -> b.bucket(bucket).key(key), RequestBody.fromBytes(bytes));
  }

  boolean exists(String bucket, String key) {
    try {
      client().headObject(b -> b.bucket(bucket).key(key));
      return true;
    } catch (software.amazon.awssdk.services.s3.model.NoSuchKeyException e) {
      return false;
    }
  }

  byte[] getObject(String bucket, String key) {
    return client().getObjectAsBytes(b -> b.bucket(bucket).key(key)).asByteArray();
  }

  /** A presigned GET URL, signed by the AWS SDK as Databend's storage layer would. */
  String presignGet(String bucket, String key, Duration validFor) {
    return presigner()
        .presignGetObject(
            r -> r.signatureDuration(validFor).getObjectRequest(g -> g.bucket(bucket).key(key)))
        .url()
        .toString();
  }

  synchronized S3Client client() {
    if (client == null) {
      client =
          S3Client.builder()
              .endpointOverride(endpoint())
              .region(Region.of(REGION))
              .forcePathStyle(true)
              .credentialsProvider(
                  StaticCredentialsProvider.create(
                      AwsBasicCredentials.create(ACCESS_KEY, SECRET_KEY)))
              .httpClient(software.amazon.awssdk.http.apache5.Apache5HttpClient.builder().build())
              .build();
    }
    return client;
  }

  synchronized S3Presigner presigner() {
    if (presigner == null) {
      presigner =
          S3Presigner.builder()
              .endpointOverride(endpoint())
              .region(Region.of(REGION))
              .serviceConfiguration(S3Configuration.builder().pathStyleAccessEnabled(true).build())
              .credentialsProvider(
                  StaticCredentialsProvider.create(
                      AwsBasicCredentials.create(ACCESS_KEY, SECRET_KEY)))
              .build();
    }
    return presigner;
  }

  /** Stops serving (connections are refused); the objects are kept for {@link #restart()}. */
  void stop() throws Exception {
    proxy.stop();
    running = false;
  }

  /** Serves the same objects again on the same port (no-op when running). */
  void restart() throws Exception {
    if (!running) {
      startOn(port);
    }
  }

  @Override
  public void close() {
    if (client != null) {
      client.close();
    }
    if (presigner != null) {
      presigner.close();
    }
    if (running) {
      try {
        proxy.stop();
      } catch (Exception e) {
        throw new IllegalStateException("s3proxy did not stop", e);
      }
    }
  }
}
