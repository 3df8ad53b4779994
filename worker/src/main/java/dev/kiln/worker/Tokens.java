package dev.kiln.worker;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.io.IOException;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileAttribute;
import java.nio.file.attribute.PosixFilePermission;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.InvalidKeyException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.regex.Pattern;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Signs and checks the tokens that tie a Flight call to one tenant's UDF resource. Databend gets a
 * token from {@code ApplyUdfResource} and sends it back on every Flight call as {@value #HEADER}.
 *
 * <p>A token is {@code v1.<content key hex>.<base64url tenant>.<base64url HMAC-SHA256>}, the MAC
 * taken over everything before the last dot. Tokens are deterministic (same tenant and key, same
 * token), so Databend gets identical answers on every call; they stay valid as long as the secret
 * does.
 */
public final class Tokens {

  /** The call header that carries the token. */
  public static final String HEADER = "x-kiln-token";

  /** What a valid token grants: one tenant's UDF resource. */
  public record Grant(Tenant tenant, ContentKey key) {
    public Grant {
      Objects.requireNonNull(tenant, "tenant");
      Objects.requireNonNull(key, "key");
    }
  }

  private static final Logger log = LoggerFactory.getLogger(Tokens.class);
  private static final String VERSION = "v1";
  private static final int MAX_TOKEN_LENGTH = 4096;
  private static final int SECRET_BYTES = 32;
  private static final Pattern SHAPE =
      Pattern.compile("v1\\.[0-9a-f]{64}\\.[A-Za-z0-9_-]*\\.[A-Za-z0-9_-]{43}");
  private static final Base64.Encoder B64 = Base64.getUrlEncoder().withoutPadding();
  private static final Base64.Decoder B64D = Base64.getUrlDecoder();

  /** Initialised once; each use clones it, which is much cheaper than a provider lookup. */
  private final Mac prototype;

  /** Uses {@code secret} (at least 32 bytes) as the HMAC key. */
  public Tokens(byte[] secret) {
    Objects.requireNonNull(secret, "secret");
    if (secret.length < SECRET_BYTES) {
      throw new IllegalArgumentException(
          "a token secret needs at least " + SECRET_BYTES + " bytes, got " + secret.length);
    }
    try {
      this.prototype = Mac.getInstance("HmacSHA256");
      prototype.init(new SecretKeySpec(secret.clone(), "HmacSHA256"));
    } catch (NoSuchAlgorithmException | InvalidKeyException e) {
      throw new IllegalStateException("the JDK cannot compute HMAC-SHA256", e);
    }
  }

  /**
   * Reads the secret from {@code secretFile}, or creates the file with 32 random bytes (mode 0600)
   * when it does not exist, so tokens stay valid across restarts.
   */
  public static Tokens loadOrCreate(Path secretFile) throws IOException {
    if (!Files.exists(secretFile)) {
      create(secretFile);
    }
    byte[] secret = Files.readAllBytes(secretFile);
    if (secret.length < SECRET_BYTES) {
      throw new IOException(
          "the token secret "
              + secretFile
              + " has "
              + secret.length
              + " bytes, fewer than "
              + SECRET_BYTES
              + "; delete it to have a new one made (tokens issued before stop working)");
    }
    warnIfReadableByOthers(secretFile);
    return new Tokens(secret);
  }

  private static void create(Path secretFile) throws IOException {
    Path dir = secretFile.toAbsolutePath().getParent();
    Files.createDirectories(dir);
    byte[] secret = new byte[SECRET_BYTES];
    new SecureRandom().nextBytes(secret);
    boolean posix = dir.getFileSystem().supportedFileAttributeViews().contains("posix");
    FileAttribute<?>[] attrs =
        posix
            ? new FileAttribute<?>[] {
              PosixFilePermissions.asFileAttribute(
                  Set.of(PosixFilePermission.OWNER_READ, PosixFilePermission.OWNER_WRITE))
            }
            : new FileAttribute<?>[0];
    // Written aside and moved into place, so a concurrent reader never sees half a secret.
    Path temp = Files.createTempFile(dir, ".token-secret", ".tmp", attrs);
    try {
      Files.write(temp, secret);
      if (Files.exists(secretFile)) {
        return; // another process made it first; use theirs
      }
      Files.move(temp, secretFile, StandardCopyOption.ATOMIC_MOVE);
    } catch (FileAlreadyExistsException e) {
      // as above
    } finally {
      Files.deleteIfExists(temp);
    }
  }

  private static void warnIfReadableByOthers(Path secretFile) {
    try {
      Set<PosixFilePermission> perms = Files.getPosixFilePermissions(secretFile);
      if (perms.contains(PosixFilePermission.GROUP_READ)
          || perms.contains(PosixFilePermission.OTHERS_READ)) {
        log.warn(
            "the token secret {} is readable by other users ({}); run chmod 600 on it",
            secretFile,
            PosixFilePermissions.toString(perms));
      }
    } catch (UnsupportedOperationException | IOException e) {
      // not a POSIX file system; nothing to check
    }
  }

  /** The token for {@code tenant}'s resource {@code key}; the same inputs give the same token. */
  public String issue(Tenant tenant, ContentKey key) {
    Objects.requireNonNull(tenant, "tenant");
    Objects.requireNonNull(key, "key");
    String body =
        VERSION
            + "."
            + key.hex()
            + "."
            + B64.encodeToString(tenant.name().getBytes(StandardCharsets.UTF_8));
    return body + "." + B64.encodeToString(sign(body));
  }

  /** The grant a token carries, or empty when it is malformed or not signed by this secret. */
  public Optional<Grant> verify(String token) {
    if (token == null || token.length() > MAX_TOKEN_LENGTH || !SHAPE.matcher(token).matches()) {
      return Optional.empty();
    }
    int lastDot = token.lastIndexOf('.');
    String body = token.substring(0, lastDot);
    byte[] presented;
    try {
      presented = B64D.decode(token.substring(lastDot + 1));
    } catch (IllegalArgumentException e) {
      return Optional.empty();
    }
    if (!MessageDigest.isEqual(sign(body), presented)) {
      return Optional.empty();
    }
    String[] parts = body.split("\\.", -1);
    try {
      byte[] tenantBytes = B64D.decode(parts[2]);
      String tenant =
          StandardCharsets.UTF_8
              .newDecoder()
              .onMalformedInput(CodingErrorAction.REPORT)
              .onUnmappableCharacter(CodingErrorAction.REPORT)
              .decode(java.nio.ByteBuffer.wrap(tenantBytes))
              .toString();
      return Optional.of(new Grant(new Tenant(tenant), new ContentKey(parts[1])));
    } catch (IllegalArgumentException | CharacterCodingException e) {
      return Optional.empty();
    }
  }

  private byte[] sign(String body) {
    return mac().doFinal(body.getBytes(StandardCharsets.US_ASCII));
  }

  private Mac mac() {
    try {
      return (Mac) prototype.clone();
    } catch (CloneNotSupportedException e) {
      throw new IllegalStateException("the JDK's HMAC-SHA256 cannot be cloned", e);
    }
  }
}
