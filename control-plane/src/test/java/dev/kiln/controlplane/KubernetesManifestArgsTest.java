package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/** The Deployment in {@code deploy/kubernetes/} starts kiln serve with flags it accepts. */
class KubernetesManifestArgsTest {

  @Test
  void theDeploymentsArgumentsAreAValidKubernetesConfiguration() throws Exception {
    List<HasMetadata> items;
    try (InputStream in =
        Files.newInputStream(Path.of("..", "deploy", "kubernetes", "kiln.yaml"))) {
      items = Serialization.unmarshal(in);
    }
    Deployment kiln =
        items.stream()
            .filter(Deployment.class::isInstance)
            .map(Deployment.class::cast)
            .findFirst()
            .orElseThrow();
    List<String> args = kiln.getSpec().getTemplate().getSpec().getContainers().getFirst().getArgs();
    assertThat(args.getFirst()).isEqualTo("serve");
    ServerOptions options = new ServerOptions();
    new CommandLine(options).parseArgs(args.subList(1, args.size()).toArray(String[]::new));
    KilnConfig config = options.builder().build();
    assertThat(config.kubernetes()).isTrue();
    assertThat(config.registry()).isNotNull();
    assertThat(config.kubernetesNamespace()).isEqualTo(kiln.getMetadata().getNamespace());
  }
}
