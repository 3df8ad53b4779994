package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class KilnConfigTest {
  @TempDir Path dir;

  @Test
  void defaultsMatchTheDocumentedPorts() throws Exception {
    KilnConfig c = KilnConfig.builder().build();
    assertThat(List.of(c.grpcPort(), c.flightPort(), c.adminPort()))
        .containsExactly(50051, 8815, 9090);
    assertThat(c.dataDir()).isEqualTo(Path.of(".kiln").toAbsolutePath());
    assertThat(c.baseImage()).endsWith("kiln/base/debian-bookworm-python3.tar");
  }

  @Test
  void fileThenFlagsOverrideDefaults() throws Exception {
    Path file = dir.resolve("kiln.yaml");
    Files.writeString(file, "grpc-port: 6000\nsandbox-memory: 1GiB\nbatch-timeout: 2m\n");
    KilnConfig c = KilnConfig.builder().load(file).set("grpc-port", "7000").build();
    assertThat(c.grpcPort()).isEqualTo(7000);
    assertThat(c.sandboxMemoryBytes()).isEqualTo(1L << 30);
    assertThat(c.batchTimeout()).isEqualTo(Duration.ofMinutes(2));
  }

  @Test
  void typosAndBadValuesAreReportedTogether() throws Exception {
    Path file = dir.resolve("kiln.yaml");
    Files.writeString(file, "grpc-prot: 6000\nsandbox-memory: lots\n");
    assertThatThrownBy(() -> KilnConfig.builder().load(file))
        .hasMessageContaining("unknown setting 'grpc-prot'")
        .hasMessageContaining("sandbox-memory must be a size");
    assertThatThrownBy(() -> KilnConfig.builder().grpcPort(70000).sandboxCpus(0).build())
        .hasMessageContaining("grpc-port must be between 0 and 65535")
        .hasMessageContaining("sandbox-cpus must be positive");
  }

  @Test
  void parsesTypeListsWithCommasInsideParentheses() throws Exception {
    assertThat(CallCommand.parseTypes("INT NULL, DECIMAL(10, 2), VARCHAR"))
        .extracting(Object::toString)
        .containsExactly("INT32 NULL", "DECIMAL(10, 2) NULL", "STRING NULL");
  }

  @Test
  void aRegistryIsARepositoryAndPlainHttpIsAllowedOnLocalhostOnly() throws Exception {
    assertThat(KilnConfig.builder().build().registry()).isNull();
    KilnConfig local = KilnConfig.builder().set("registry", "localhost:5000/kiln").build();
    assertThat(local.registry()).isEqualTo("localhost:5000/kiln");
    assertThat(local.registryInsecure()).isTrue();
    KilnConfig remote =
        KilnConfig.builder().set("registry", "registry.example.com/team/kiln").build();
    assertThat(remote.registryInsecure()).isFalse();
    assertThat(
            KilnConfig.builder()
                .set("registry", "registry.example.com/kiln")
                .set("registry-insecure", "true")
                .build()
                .registryInsecure())
        .isTrue();
    for (String bad : List.of("localhost:5000", "localhost:5000/Kiln", "r.example.com/kiln:v1")) {
      assertThatThrownBy(() -> KilnConfig.builder().set("registry", bad).build())
          .hasMessageContaining("registry '" + bad + "' must be HOST[:PORT]/REPOSITORY");
    }
  }

  @Test
  void aRegistryLoginIsAUserAndAFileHoldingThePasswordBothOrNeither() throws Exception {
    Path password = Files.writeString(dir.resolve("password"), "s3cret\n");
    KilnConfig c =
        KilnConfig.builder()
            .set("registry", "registry.example.com/kiln")
            .set("registry-username", "kiln")
            .set("registry-password-file", password.toString())
            .build();
    assertThat(c.registryUsername()).isEqualTo("kiln");
    assertThat(c.registryPasswordFile()).isEqualTo(password.toAbsolutePath());
    assertThat(KilnConfig.builder().build().registryUsername())
        .as("else the Docker config")
        .isNull();
    assertThatThrownBy(() -> KilnConfig.builder().set("registry-username", "kiln").build())
        .hasMessageContaining("registry-username and registry-password-file go together");
    assertThatThrownBy(
            () ->
                KilnConfig.builder()
                    .set("registry-username", "kiln")
                    .set("registry-password-file", dir.resolve("missing").toString())
                    .build())
        .hasMessageContaining("registry-password-file " + dir.resolve("missing"))
        .hasMessageContaining("is not a readable file");
  }

  @Test
  void kubernetesNeedsARegistryItsNodesPullFrom() throws Exception {
    assertThatThrownBy(() -> KilnConfig.builder().set("kubernetes", "true").build())
        .hasMessageContaining("kubernetes needs a registry its nodes pull UDF images from");
    KilnConfig c =
        KilnConfig.builder()
            .set("kubernetes", "true")
            .set("registry", "localhost:5000/kiln")
            .set("kubernetes-namespace", "udfs")
            .build();
    assertThat(c.kubernetes()).isTrue();
    assertThat(c.kubernetesNamespace()).isEqualTo("udfs");
    assertThatThrownBy(() -> KilnConfig.builder().set("kubernetes-namespace", "Not_A_Name").build())
        .hasMessageContaining("kubernetes-namespace 'Not_A_Name' is not a namespace name");
  }
}
