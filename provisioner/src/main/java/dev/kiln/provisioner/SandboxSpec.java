package dev.kiln.provisioner;

import java.util.List;
import java.util.Objects;

/**
 * A request for one sandbox.
 *
 * @param name a short human-readable label (e.g. the content key's short form); the provisioner
 *     makes the sandbox id unique itself
 * @param image what to run
 * @param limits memory and CPU limits
 * @param extraEnv {@code KEY=value} pairs added to (and overriding) the image's environment
 */
public record SandboxSpec(String name, SandboxImage image, Limits limits, List<String> extraEnv) {
  public SandboxSpec {
    Objects.requireNonNull(name, "name");
    Objects.requireNonNull(image, "image");
    Objects.requireNonNull(limits, "limits");
    extraEnv = List.copyOf(extraEnv);
  }
}
