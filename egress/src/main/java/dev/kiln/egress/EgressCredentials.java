package dev.kiln.egress;

import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Base64;
import java.util.Optional;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * Credentials any egress proxy holding the same key accepts without having admitted them: the
 * client (tenant, worker, UDF, allow-list) and an HMAC-SHA256 over it, for sandboxes that are pods
 * and a proxy that is a Deployment of its own (it keeps no state; a pod that is gone cannot reach
 * it any more, its network policy being the pod's). The key is derived from the secret Kiln's
 * replicas share, never that secret itself. A credential is {@code v1.} and six base64url fields
 * joined by dots: it fits the password of a proxy URL as it is.
 */
public final class EgressCredentials {
  private static final String VERSION = "v1";
  private static final Base64.Encoder B64 = Base64.getUrlEncoder().withoutPadding();
  private static final Base64.Decoder UNB64 = Base64.getUrlDecoder();

  private final SecretKeySpec key;

  private EgressCredentials(byte[] key) {
    this.key = new SecretKeySpec(key, "HmacSHA256");
  }

  /** Credentials keyed by a key derived from {@code sharedSecret} (Kiln's replicas' secret). */
  public static EgressCredentials fromSharedSecret(byte[] sharedSecret) {
    if (sharedSecret.length < 16) {
      throw new IllegalArgumentException(
          "the shared secret has " + sharedSecret.length + " bytes; at least 16 are needed");
    }
    return new EgressCredentials(
        hmac(new SecretKeySpec(sharedSecret, "HmacSHA256"), "kiln egress credentials v1"));
  }

  /** The credential for {@code client}. */
  public String issue(EgressProxy.Client client) {
    String body =
        String.join(
            ".",
            VERSION,
            b64(client.tenant()),
            b64(client.worker()),
            b64(client.udf()),
            b64(client.policy().toString()),
            b64(client.policyFile() == null ? "" : client.policyFile()));
    return body + "." + B64.encodeToString(hmac(key, body));
  }

  /** The client {@code credential} stands for, when this key signed it; empty otherwise. */
  public Optional<EgressProxy.Client> verify(String credential) {
    int last = credential.lastIndexOf('.');
    if (!credential.startsWith(VERSION + ".") || last < 0) {
      return Optional.empty();
    }
    String body = credential.substring(0, last);
    String[] f = body.split("\\.", -1);
    try {
      if (f.length != 6
          || !MessageDigest.isEqual(
              hmac(key, body), UNB64.decode(credential.substring(last + 1)))) {
        return Optional.empty();
      }
      String file = text(f[5]);
      return Optional.of(
          new EgressProxy.Client(
              text(f[1]),
              text(f[2]),
              text(f[3]),
              EgressPolicy.parse(text(f[4])),
              file.isEmpty() ? null : file));
    } catch (IllegalArgumentException | dev.kiln.base.KilnException e) {
      return Optional.empty();
    }
  }

  private static String b64(String s) {
    return B64.encodeToString(s.getBytes(StandardCharsets.UTF_8));
  }

  private static String text(String b64) {
    return new String(UNB64.decode(b64), StandardCharsets.UTF_8);
  }

  private static byte[] hmac(SecretKeySpec key, String data) {
    try {
      Mac mac = Mac.getInstance("HmacSHA256");
      mac.init(key);
      return mac.doFinal(data.getBytes(StandardCharsets.UTF_8));
    } catch (NoSuchAlgorithmException | InvalidKeyException e) {
      throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
    }
  }
}
