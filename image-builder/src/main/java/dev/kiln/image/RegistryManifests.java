package dev.kiln.image;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.cloud.tools.jib.api.Credential;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.api.LogEvent;
import com.google.cloud.tools.jib.api.RegistryException;
import com.google.cloud.tools.jib.api.RegistryUnauthorizedException;
import com.google.cloud.tools.jib.event.EventHandlers;
import com.google.cloud.tools.jib.http.FailoverHttpClient;
import com.google.cloud.tools.jib.image.json.BuildableManifestTemplate;
import com.google.cloud.tools.jib.image.json.ManifestListTemplate;
import com.google.cloud.tools.jib.image.json.ManifestTemplate;
import com.google.cloud.tools.jib.registry.ManifestAndDigest;
import com.google.cloud.tools.jib.registry.RegistryClient;
import dev.kiln.cache.Digest;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.util.List;
import java.util.Map;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Reads a base image's manifest and config from its registry with Jib's registry client, which
 * already speaks the registry protocol, anonymous bearer tokens and the http fallback for insecure
 * registries.
 */
final class RegistryManifests implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(RegistryManifests.class);
  private static final ObjectMapper JSON = new ObjectMapper();

  /** Kiln runs its sandboxes on amd64 Linux; a manifest list is narrowed to that platform. */
  static final String ARCHITECTURE = "amd64";

  static final String OS = "linux";

  private final ImageReference image;
  private final FailoverHttpClient http;
  private final RegistryClient client;
  private boolean authenticated;

  RegistryManifests(ImageReference image, boolean allowInsecure) {
    this.image = image;
    this.http = httpClient(allowInsecure);
    this.client = registryClient(image, http);
  }

  /** Jib's HTTP client for registries; {@code allowInsecure} lets it fall back to plain http. */
  static FailoverHttpClient httpClient(boolean allowInsecure) {
    return httpClient(allowInsecure, false);
  }

  /**
   * Jib's HTTP client for registries; {@code allowInsecure} lets it fall back to plain http, and
   * {@code loginOverHttp} lets a login go over it too (for a registry on this machine only).
   */
  static FailoverHttpClient httpClient(boolean allowInsecure, boolean loginOverHttp) {
    return new FailoverHttpClient(
        allowInsecure, allowInsecure && loginOverHttp, e -> log.debug("{}", e.getMessage()));
  }

  /** Jib's registry client for the repository of {@code image}, its events in the debug log. */
  static RegistryClient registryClient(ImageReference image, FailoverHttpClient http) {
    return registryClient(image, http, null);
  }

  /** The same, logging in with {@code login} (null: anonymously). */
  static RegistryClient registryClient(
      ImageReference image, FailoverHttpClient http, Credential login) {
    EventHandlers events =
        EventHandlers.builder().add(LogEvent.class, e -> log.debug("{}", e.getMessage())).build();
    return RegistryClient.factory(events, image.getRegistry(), image.getRepository(), http)
        .setUserAgent("kiln-image-builder")
        .setCredential(login)
        .newRegistryClient();
  }

  /** The digest of the manifest (or manifest list) the reference names now. */
  Digest manifestDigest() throws IOException {
    return Digest.parse(pull(image.getQualifier()).getDigest().toString());
  }

  /** The labels of the image's config, for the amd64/linux entry when it is a manifest list. */
  Map<String, String> labels() throws IOException {
    ManifestTemplate manifest = pull(image.getQualifier()).getManifest();
    if (manifest instanceof ManifestListTemplate list) {
      List<String> digests = list.getDigestsForPlatform(ARCHITECTURE, OS);
      if (digests.isEmpty()) {
        throw new IOException(
            String.format(
                "base image %s has no %s/%s variant; choose an image built for %s/%s",
                image, OS, ARCHITECTURE, OS, ARCHITECTURE));
      }
      manifest = pull(digests.get(0)).getManifest();
    }
    if (!(manifest instanceof BuildableManifestTemplate buildable)) {
      // A schema 1 manifest has no separate config; nothing modern serves one.
      return Map.of();
    }
    ByteArrayOutputStream config = new ByteArrayOutputStream();
    client
        .pullBlob(buildable.getContainerConfiguration().getDigest(), size -> {}, written -> {})
        .writeTo(config);
    return DockerArchive.labels(JSON.readTree(config.toByteArray()));
  }

  private ManifestAndDigest<ManifestTemplate> pull(String qualifier) throws IOException {
    try {
      try {
        return client.pullManifest(qualifier);
      } catch (RegistryUnauthorizedException e) {
        if (authenticated) {
          throw e;
        }
        // Public images on most registries want an anonymous bearer token first.
        authenticated = true;
        client.doPullBearerAuth();
        return client.pullManifest(qualifier);
      }
    } catch (RegistryException e) {
      throw new IOException(
          "registry "
              + image.getRegistry()
              + " refused the manifest of "
              + image
              + ": "
              + e.getMessage()
              + "; check the image name and tag, and that the registry allows"
              + " anonymous pulls",
          e);
    }
  }

  @Override
  public void close() {
    try {
      http.shutDown();
    } catch (IOException e) {
      log.debug("closing the registry connection failed", e);
    }
  }
}
