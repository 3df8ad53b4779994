package dev.kiln.provisioner.kubernetes;

import io.fabric8.kubernetes.api.model.Secret;
import io.fabric8.kubernetes.api.model.SecretBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientException;
import java.io.IOException;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.Map;

/**
 * The one secret every Kiln replica shares (the key its tokens are signed with), kept as a
 * Kubernetes Secret in Kiln's namespace: the first replica to start makes it with random bytes, the
 * others read it, so a token one replica issued is good on every other. RBAC grants Kiln {@code
 * get} on this Secret by name and {@code create}; no other secret.
 */
public final class ReplicaSecret {
  /** The Secret's name in Kiln's namespace. */
  public static final String NAME = "kiln-token-secret";

  /** Its one data key. */
  static final String KEY = "token-secret";

  private ReplicaSecret() {}

  /**
   * The shared secret's bytes (at least {@code bytes} of them), made now when no replica made it
   * before.
   *
   * @throws IOException when the API server cannot be asked, or the Secret there is too short
   */
  public static byte[] loadOrCreate(KubernetesClient client, String namespace, int bytes)
      throws IOException {
    try {
      byte[] secret = read(client, namespace);
      if (secret == null) {
        byte[] random = new byte[bytes];
        new SecureRandom().nextBytes(random);
        Secret made =
            new SecretBuilder()
                .withNewMetadata()
                .withName(NAME)
                .withNamespace(namespace)
                .addToLabels(KubernetesNames.MANAGED_BY, "kiln")
                .endMetadata()
                .withType("Opaque")
                .withData(Map.of(KEY, Base64.getEncoder().encodeToString(random)))
                .build();
        // Another replica may have made it first: then theirs counts.
        secret =
            Conflicts.won(() -> client.secrets().inNamespace(namespace).resource(made).create())
                ? random
                : read(client, namespace);
      }
      if (secret == null || secret.length < bytes) {
        throw new IOException(
            "the Secret "
                + namespace
                + "/"
                + NAME
                + " holds "
                + (secret == null ? 0 : secret.length)
                + " bytes under '"
                + KEY
                + "', fewer than "
                + bytes
                + "; delete it and restart Kiln to have a new one made (tokens issued before stop"
                + " working)");
      }
      return secret;
    } catch (KubernetesClientException e) {
      throw new IOException(
          "cannot read or create the Secret "
              + namespace
              + "/"
              + NAME
              + " that Kiln's replicas share: "
              + e.getMessage()
              + "; check the API server and Kiln's RBAC (deploy/kubernetes/rbac.yaml)",
          e);
    }
  }

  private static byte[] read(KubernetesClient client, String namespace) {
    Secret s = client.secrets().inNamespace(namespace).withName(NAME).get();
    if (s == null || s.getData() == null || !s.getData().containsKey(KEY)) {
      return null;
    }
    return Base64.getDecoder().decode(s.getData().get(KEY));
  }
}
