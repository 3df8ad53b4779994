package dev.kiln.cache;

import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.channels.Channels;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.DigestOutputStream;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.UUID;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.ResponseInputStream;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.S3ClientBuilder;
import software.amazon.awssdk.services.s3.model.CompletedPart;
import software.amazon.awssdk.services.s3.model.GetObjectResponse;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.S3Exception;

/**
 * The remote tier: blobs as objects {@code <prefix>sha256/<hex>} in an S3-compatible bucket, shared
 * by every Kiln node, so each byte is fetched from its origin once per fleet.
 *
 * <p>Reads stream to a file while hashing, and a copy that does not match its digest is deleted
 * from the bucket (it is useless to every node; the next writer uploads a good one). Writes come
 * from files already verified, as one PUT or, from {@link Tuning#multipartThreshold} on, as a
 * multipart upload, whose parts are read from the file again on a retry instead of being buffered.
 *
 * <p>The client asks for no flexible checksums (CRC32 trailers, {@code aws-chunked} bodies) unless
 * an operation requires them: several S3-compatible stores (GCS among them) reject them, and the
 * sha256 check on read covers what they would.
 */
final class S3Tier implements BlobTier {
  private static final Logger log = LoggerFactory.getLogger(S3Tier.class);

  private final S3Settings settings;
  private final S3Client s3;
  private final String bucket;
  private final String prefix;
  private final Path tmp;
  private final Tuning tuning;
  private final TierMeters meters;

  S3Tier(S3Settings settings, Path tmp, Tuning tuning, MeterRegistry registry) throws IOException {
    this.settings = settings;
    this.bucket = settings.bucket();
    this.prefix = settings.keyPrefix();
    this.tmp = tmp;
    this.tuning = tuning;
    Files.createDirectories(tmp);
    this.s3 = client(settings, tuning);
    this.meters = new TierMeters("remote", registry, () -> -1);
  }

  static S3Client client(S3Settings s, Tuning t) {
    AwsCredentialsProvider credentials =
        s.accessKeyId().isPresent()
            ? StaticCredentialsProvider.create(
                AwsBasicCredentials.create(s.accessKeyId().get(), s.secretAccessKey().get()))
            : DefaultCredentialsProvider.builder().build();
    S3ClientBuilder b =
        S3Client.builder()
            .region(Region.of(s.region()))
            .credentialsProvider(credentials)
            .forcePathStyle(s.pathStyle())
            .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
            .responseChecksumValidation(ResponseChecksumValidation.WHEN_REQUIRED)
            .httpClient(
                Apache5HttpClient.builder()
                    .connectionTimeout(t.s3ConnectTimeout())
                    .socketTimeout(t.s3SocketTimeout())
                    .maxConnections(32)
                    .build())
            .overrideConfiguration(o -> o.retryStrategy(r -> r.maxAttempts(t.s3Attempts())));
    s.endpoint().ifPresent(b::endpointOverride);
    return b.build();
  }

  @Override
  public String name() {
    return "remote";
  }

  TierMeters meters() {
    return meters;
  }

  String key(Digest d) {
    return prefix + "sha256/" + d.hex();
  }

  private String where(Digest d) {
    return "s3://" + bucket + "/" + key(d);
  }

  @Override
  public boolean contains(Digest d) throws IOException {
    try {
      s3.headObject(r -> r.bucket(bucket).key(key(d)));
      return true;
    } catch (NoSuchKeyException e) {
      return false;
    } catch (S3Exception e) {
      if (e.statusCode() == 404) {
        return false;
      }
      throw failure("look up", d, e);
    } catch (SdkException e) {
      throw failure("look up", d, e);
    }
  }

  @Override
  public Optional<InputStream> open(Digest d) throws IOException {
    ResponseInputStream<GetObjectResponse> in;
    try {
      in = s3.getObject(r -> r.bucket(bucket).key(key(d)));
    } catch (NoSuchKeyException e) {
      return Optional.empty();
    } catch (S3Exception e) {
      if (e.statusCode() == 404) {
        return Optional.empty();
      }
      throw failure("read", d, e);
    } catch (SdkException e) {
      throw failure("read", d, e);
    }
    return Optional.of(
        new VerifyingInputStream(
            in,
            d,
            where(d),
            actual -> {
              log.warn("{} hashes to {}; deleting it from the bucket", where(d), actual);
              meters.corrupt.increment();
              deleteQuietly(d);
            }));
  }

  /**
   * Streams the blob into {@code target} while hashing it; returns its size, or -1 when the bucket
   * does not have it. Throws {@link CorruptBlobException} (after deleting the bad object) when the
   * bytes do not match; {@code target} then holds garbage for the caller to delete.
   */
  long download(Digest d, Path target) throws IOException {
    Optional<InputStream> in = open(d);
    if (in.isEmpty()) {
      return -1;
    }
    try (InputStream src = in.get();
        OutputStream out =
            LocalDiskException.marking(Files.newOutputStream(target), target.toString())) {
      return copy(src, out, d);
    }
  }

  private long copy(InputStream src, OutputStream out, Digest d) throws IOException {
    try {
      return src.transferTo(out);
    } catch (SdkException e) {
      throw failure("read", d, e);
    }
  }

  /** Uploads a file whose bytes are known to hash to {@code d}. */
  void upload(Digest d, Path file) throws IOException {
    long size = Files.size(file);
    try {
      if (size >= tuning.multipartThreshold()) {
        uploadMultipart(d, file, size);
      } else {
        s3.putObject(
            r -> r.bucket(bucket).key(key(d)).contentLength(size), RequestBody.fromFile(file));
      }
      meters.wrote(size);
    } catch (SdkException e) {
      throw failure("write", d, e);
    }
  }

  private void uploadMultipart(Digest d, Path file, long size) {
    String key = key(d);
    String uploadId = s3.createMultipartUpload(r -> r.bucket(bucket).key(key)).uploadId();
    try {
      List<CompletedPart> parts = new ArrayList<>();
      long part = tuning.partSize();
      int number = 1;
      for (long off = 0; off < size; off += part, number++) {
        long offset = off;
        long len = Math.min(part, size - off);
        int n = number;
        String etag =
            s3.uploadPart(
                    r ->
                        r.bucket(bucket)
                            .key(key)
                            .uploadId(uploadId)
                            .partNumber(n)
                            .contentLength(len),
                    // A fresh stream over the same slice of the file for each (re)try.
                    RequestBody.fromContentProvider(
                        () -> slice(file, offset, len), len, "application/octet-stream"))
                .eTag();
        parts.add(CompletedPart.builder().partNumber(n).eTag(etag).build());
      }
      s3.completeMultipartUpload(
          r -> r.bucket(bucket).key(key).uploadId(uploadId).multipartUpload(m -> m.parts(parts)));
    } catch (RuntimeException e) {
      try {
        s3.abortMultipartUpload(r -> r.bucket(bucket).key(key).uploadId(uploadId));
      } catch (RuntimeException abort) {
        e.addSuppressed(abort);
      }
      throw e;
    }
  }

  private static InputStream slice(Path file, long offset, long len) {
    try {
      FileChannel ch = FileChannel.open(file, StandardOpenOption.READ);
      ch.position(offset);
      return new java.io.FilterInputStream(Channels.newInputStream(ch)) {
        long left = len;

        @Override
        public int read() throws IOException {
          if (left <= 0) {
            return -1;
          }
          int b = super.read();
          if (b >= 0) {
            left--;
          }
          return b;
        }

        @Override
        public int read(byte[] buf, int off, int n) throws IOException {
          if (left <= 0) {
            return -1;
          }
          int r = super.read(buf, off, (int) Math.min(n, left));
          if (r > 0) {
            left -= r;
          }
          return r;
        }
      };
    } catch (IOException e) {
      throw new java.io.UncheckedIOException(e);
    }
  }

  /** Hashes the stream into a temporary file, checks it, then uploads it. */
  @Override
  public void put(Digest expected, InputStream content) throws IOException {
    Path temp = tmp.resolve("s3-" + UUID.randomUUID() + ".part");
    try {
      MessageDigest sha = Digest.newSha256();
      try (OutputStream out = new DigestOutputStream(Files.newOutputStream(temp), sha)) {
        content.transferTo(out);
      }
      Digest actual = Digest.fromSha(sha);
      if (!actual.equals(expected)) {
        throw new CorruptBlobException(expected, actual, "a write to " + where(expected));
      }
      upload(expected, temp);
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  /** Checks that the bucket answers (a HEAD of the bucket). */
  void probe() throws IOException {
    try {
      s3.headBucket(r -> r.bucket(bucket));
    } catch (SdkException e) {
      throw new IOException(
          "remote cache: bucket "
              + bucket
              + " at "
              + settings.endpoint().map(Object::toString).orElse("AWS S3 " + settings.region())
              + " does not answer: "
              + e.getMessage(),
          e);
    }
  }

  @Override
  public void delete(Digest d) throws IOException {
    try {
      s3.deleteObject(r -> r.bucket(bucket).key(key(d)));
    } catch (SdkException e) {
      throw failure("delete", d, e);
    }
  }

  private void deleteQuietly(Digest d) {
    try {
      delete(d);
    } catch (IOException e) {
      log.warn("could not delete {}: {}", where(d), e.getMessage());
    }
  }

  /** A shared bucket's contents are unknown to one node (listing it would cost too much). */
  @Override
  public long entries() {
    return -1;
  }

  @Override
  public long sizeBytes() {
    return -1;
  }

  @Override
  public void close() {
    s3.close();
  }

  private IOException failure(String what, Digest d, SdkException e) {
    String status = e instanceof S3Exception s ? " (HTTP " + s.statusCode() + ")" : "";
    return new IOException(
        "remote cache: could not "
            + what
            + " "
            + where(d)
            + " at "
            + settings.endpoint().map(Object::toString).orElse("AWS S3 " + settings.region())
            + status
            + ": "
            + e.getMessage(),
        e);
  }
}
