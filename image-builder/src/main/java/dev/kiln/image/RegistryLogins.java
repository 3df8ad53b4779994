package dev.kiln.image;

import com.google.cloud.tools.jib.api.Credential;
import com.google.cloud.tools.jib.api.CredentialRetriever;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.frontend.CredentialRetrieverFactory;
import com.google.cloud.tools.jib.registry.credentials.CredentialRetrievalException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Objects;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * How Kiln logs in to a registry it pushes images to: a user and password given for that registry
 * ({@code --registry-username} and {@code --registry-password-file}), else what {@code docker
 * login} left in the Docker config ({@code $DOCKER_CONFIG/config.json}, or {@code
 * ~/.docker/config.json}: its {@code auths}, and the credential helpers it names), else none. The
 * Docker config is read by Jib's credential retriever at each push, so a renewed login counts
 * without a restart.
 */
public final class RegistryLogins {
  private static final Logger log = LoggerFactory.getLogger(RegistryLogins.class);

  private final String registry;
  private final Credential given;
  private final Path dockerConfig;

  private RegistryLogins(String registry, Credential given, Path dockerConfig) {
    this.registry = registry;
    this.given = given;
    this.dockerConfig = dockerConfig;
  }

  /**
   * What {@code docker login} left in {@code dockerConfig} (a {@code config.json}), if anything.
   */
  public static RegistryLogins dockerConfig(Path dockerConfig) {
    return new RegistryLogins(null, null, Objects.requireNonNull(dockerConfig, "dockerConfig"));
  }

  /** {@code username} and {@code password} for {@code registry} ({@code HOST[:PORT]}) only. */
  public static RegistryLogins given(String registry, String username, String password) {
    return new RegistryLogins(
        Objects.requireNonNull(registry, "registry"), Credential.from(username, password), null);
  }

  /**
   * The Docker config as the docker CLI finds it: {@code $DOCKER_CONFIG/config.json}, else home.
   */
  public static Path defaultDockerConfig() {
    String dir = System.getenv("DOCKER_CONFIG");
    return dir != null && !dir.isBlank()
        ? Path.of(dir, "config.json")
        : Path.of(System.getProperty("user.home"), ".docker", "config.json");
  }

  /** What a log line may say of these logins: never a password. */
  @Override
  public String toString() {
    return given != null
        ? "user " + given.getUsername() + " for " + registry
        : "the Docker config " + dockerConfig;
  }

  /** The login for the registry of {@code image}; empty for none (anonymous). */
  Optional<Credential> forImage(ImageReference image) throws IOException {
    if (given != null) {
      return image.getRegistry().equals(registry) ? Optional.of(given) : Optional.empty();
    }
    CredentialRetriever docker =
        CredentialRetrieverFactory.forImage(image, e -> log.debug("{}", e.getMessage()))
            .dockerConfig(dockerConfig);
    try {
      return docker.retrieve();
    } catch (CredentialRetrievalException e) {
      throw new IOException(
          "cannot read the login for "
              + image.getRegistry()
              + " from "
              + dockerConfig
              + " (or the credential helper it names): "
              + e.getMessage(),
          e);
    }
  }
}
