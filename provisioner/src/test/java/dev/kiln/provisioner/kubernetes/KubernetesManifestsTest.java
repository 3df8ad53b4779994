package dev.kiln.provisioner.kubernetes;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinition;
import io.fabric8.kubernetes.api.model.apiextensions.v1.CustomResourceDefinitionVersion;
import io.fabric8.kubernetes.api.model.apiextensions.v1.JSONSchemaProps;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.rbac.ClusterRole;
import io.fabric8.kubernetes.api.model.rbac.PolicyRule;
import io.fabric8.kubernetes.api.model.rbac.Role;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The manifests under {@code deploy/kubernetes/} load with the fabric8 client, are accepted by its
 * mock API server in CRUD mode ({@link KubernetesMock}: the one fake, since no Kubernetes API
 * server can be installed here), and agree with the code: the CRD with {@link UdfWorker}, the
 * tenant network policy with {@link SandboxPods}, the RBAC rules with what the reconciler does.
 */
class KubernetesManifestsTest {
  private KubernetesMock mock;
  private KubernetesClient client;

  @BeforeEach
  void start() throws IOException {
    mock = new KubernetesMock();
    client = mock.client();
  }

  @AfterEach
  void stop() {
    mock.close();
  }

  private List<HasMetadata> load(String file) throws IOException {
    try (InputStream in = Files.newInputStream(KubernetesMock.MANIFESTS.resolve(file))) {
      return client.load(in).items();
    }
  }

  private <T> List<T> all(Class<T> kind) throws IOException {
    List<T> found = new ArrayList<>();
    for (Path f : manifests()) {
      load(f.getFileName().toString()).stream()
          .filter(kind::isInstance)
          .map(kind::cast)
          .forEach(found::add);
    }
    return found;
  }

  private static List<Path> manifests() throws IOException {
    try (Stream<Path> files = Files.list(KubernetesMock.MANIFESTS)) {
      return files.filter(f -> f.toString().endsWith(".yaml")).sorted().toList();
    }
  }

  @Test
  void everyManifestLoadsAndTheApiServerAcceptsIt() throws IOException {
    assertThat(manifests()).hasSizeGreaterThanOrEqualTo(6);
    for (Path f : manifests()) {
      List<HasMetadata> items = load(f.getFileName().toString());
      assertThat(items).as(f.toString()).isNotEmpty();
      for (HasMetadata item : items) {
        if (item instanceof CustomResourceDefinition) {
          continue; // the mock was started with it
        }
        HasMetadata created = client.resource(item).create();
        assertThat(client.resource(created).get()).as(f + ": " + item.getKind()).isNotNull();
      }
    }
  }

  @Test
  void theCrdDescribesTheUdfWorkerModel() throws IOException {
    CustomResourceDefinition crd = all(CustomResourceDefinition.class).getFirst();
    assertThat(crd.getMetadata().getName())
        .isEqualTo(HasMetadata.getFullResourceName(UdfWorker.class));
    assertThat(crd.getSpec().getGroup()).isEqualTo(UdfWorker.GROUP);
    assertThat(crd.getSpec().getNames().getKind()).isEqualTo(HasMetadata.getKind(UdfWorker.class));
    assertThat(crd.getSpec().getScope()).isEqualTo("Namespaced");
    CustomResourceDefinitionVersion v = crd.getSpec().getVersions().getFirst();
    assertThat(v.getName()).isEqualTo(UdfWorker.VERSION);
    assertThat(v.getSubresources().getStatus()).isNotNull();
    Map<String, JSONSchemaProps> props = v.getSchema().getOpenAPIV3Schema().getProperties();

    // Every field the model writes is in the schema (an API server prunes unknown fields).
    UdfWorkerSpec spec = new UdfWorkerSpec();
    spec.setTenant("t");
    spec.setUdf("u");
    spec.setKey("k");
    spec.setImage("i");
    spec.setDefinition("d");
    spec.setEnvSecret("s");
    spec.setEnvVersion("v");
    UdfWorkerStatus status = new UdfWorkerStatus();
    status.setPhase("Ready");
    status.setObservedGeneration(1L);
    status.setMessage("m");
    assertThat(props.get("spec").getProperties().keySet())
        .containsExactlyInAnyOrderElementsOf(fields(spec));
    assertThat(props.get("status").getProperties().keySet())
        .containsExactlyInAnyOrderElementsOf(fields(status));
  }

  @SuppressWarnings("unchecked")
  private static List<String> fields(Object o) {
    return new ArrayList<>(Serialization.unmarshal(Serialization.asJson(o), Map.class).keySet());
  }

  private <T extends HasMetadata> T named(Class<T> kind, String name) throws IOException {
    return all(kind).stream()
        .filter(x -> x.getMetadata().getName().equals(name))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no " + kind.getSimpleName() + " " + name));
  }

  @Test
  void theTenantPoliciesShownAreTheOnesKilnCreates() throws IOException {
    KubernetesSettings settings = KubernetesSettings.defaults("kiln");
    for (NetworkPolicy made :
        List.of(
            SandboxPods.networkPolicy("example", settings),
            SandboxPods.egressNetworkPolicy("example", settings))) {
      NetworkPolicy shown = named(NetworkPolicy.class, made.getMetadata().getName());
      assertThat(shown.getMetadata().getNamespace()).isEqualTo(made.getMetadata().getNamespace());
      assertThat(shown.getSpec()).isEqualTo(made.getSpec());
    }
  }

  @Test
  void theEgressProxyIsWhatPodsWithEgressMayReachAndItAdmitsOnlyThem() throws IOException {
    NetworkPolicy tenant =
        SandboxPods.egressNetworkPolicy("example", KubernetesSettings.defaults("kiln"));
    Deployment proxy = named(Deployment.class, SandboxPods.EGRESS_PROXY);
    assertThat(proxy.getSpec().getTemplate().getMetadata().getLabels())
        .containsAllEntriesOf(
            tenant
                .getSpec()
                .getEgress()
                .getFirst()
                .getTo()
                .getFirst()
                .getPodSelector()
                .getMatchLabels());
    var container = proxy.getSpec().getTemplate().getSpec().getContainers().getFirst();
    assertThat(container.getArgs()).contains("egress", "--port=" + SandboxPods.EGRESS_PROXY_PORT);
    assertThat(container.getPorts().getFirst().getContainerPort())
        .isEqualTo(SandboxPods.EGRESS_PROXY_PORT);
    // The secret it checks credentials with is the one the replicas sign them with.
    var secret = proxy.getSpec().getTemplate().getSpec().getVolumes().getFirst().getSecret();
    assertThat(secret.getSecretName()).isEqualTo(ReplicaSecret.NAME);
    assertThat(secret.getItems().getFirst().getKey()).isEqualTo(ReplicaSecret.KEY);
    String mounted =
        container.getVolumeMounts().getFirst().getMountPath()
            + "/"
            + secret.getItems().getFirst().getPath();
    assertThat(container.getArgs()).contains("--secret-file=" + mounted);
    io.fabric8.kubernetes.api.model.Service svc =
        named(io.fabric8.kubernetes.api.model.Service.class, SandboxPods.EGRESS_PROXY);
    assertThat(svc.getSpec().getPorts().getFirst().getPort())
        .isEqualTo(SandboxPods.EGRESS_PROXY_PORT);
    NetworkPolicy own = named(NetworkPolicy.class, SandboxPods.EGRESS_PROXY);
    assertThat(
            own.getSpec()
                .getIngress()
                .getFirst()
                .getFrom()
                .getFirst()
                .getPodSelector()
                .getMatchLabels())
        .isEqualTo(Map.of(KubernetesNames.EGRESS, "true"));
  }

  @Test
  void kilnsPodsAreTheOnesTenantPoliciesAdmitAndMayDoWhatTheReconcilerDoes() throws IOException {
    Deployment kiln = named(Deployment.class, "kiln");
    assertThat(kiln.getMetadata().getNamespace()).isEqualTo("kiln");
    assertThat(kiln.getSpec().getTemplate().getMetadata().getLabels())
        .containsAllEntriesOf(KubernetesSettings.KILN_POD_LABELS);
    assertThat(kiln.getSpec().getTemplate().getSpec().getServiceAccountName()).isEqualTo("kiln");

    List<PolicyRule> rules = new ArrayList<>();
    all(ClusterRole.class).forEach(r -> rules.addAll(r.getRules()));
    List<PolicyRule> clusterRules = List.copyOf(rules);
    all(Role.class).forEach(r -> rules.addAll(r.getRules()));
    assertThat(allows(rules, "", "pods", "create")).isTrue();
    assertThat(allows(rules, "", "pods", "delete")).isTrue();
    assertThat(allows(rules, "", "pods", "watch")).isTrue();
    assertThat(allows(rules, "", "namespaces", "create")).isTrue();
    assertThat(allows(rules, "networking.k8s.io", "networkpolicies", "create")).isTrue();
    assertThat(allows(rules, "coordination.k8s.io", "leases", "update")).isTrue();
    assertThat(allows(rules, UdfWorker.GROUP, "udfworkers", "watch")).isTrue();
    assertThat(allows(rules, UdfWorker.GROUP, "udfworkers/status", "patch")).isTrue();
    assertThat(allows(rules, "", "pods", "patch")).as("a replica marks the pods it holds").isTrue();
    assertThat(allows(rules, "", "configmaps", "update")).as("Databend's workers").isTrue();
    assertThat(allows(clusterRules, "", "configmaps", "watch"))
        .as("only Kiln's own namespace's")
        .isFalse();
    // Secrets: only the one the replicas share, by name, in Kiln's own namespace.
    assertThat(allows(clusterRules, "", "secrets", "get")).isFalse();
    assertThat(allows(rules, "", "secrets", "list")).isFalse();
    assertThat(allows(rules, "", "secrets", "create")).isTrue();
    assertThat(allows(clusterRules, "", "secrets", "update")).as("the UDFs' variables").isTrue();
    assertThat(allows(clusterRules, "", "secrets", "watch")).isFalse();
    assertThat(rules)
        .filteredOn(r -> r.getResources().contains("secrets") && r.getVerbs().contains("get"))
        .singleElement()
        .satisfies(r -> assertThat(r.getResourceNames()).containsExactly(ReplicaSecret.NAME));
  }

  private static boolean allows(
      List<PolicyRule> rules, String group, String resource, String verb) {
    return rules.stream()
        .anyMatch(
            r ->
                r.getApiGroups().contains(group)
                    && r.getResources().contains(resource)
                    && r.getVerbs().contains(verb));
  }
}
