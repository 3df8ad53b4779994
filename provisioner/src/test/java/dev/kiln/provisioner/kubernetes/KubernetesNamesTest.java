package dev.kiln.provisioner.kubernetes;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class KubernetesNamesTest {
  private static final String DNS_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";

  @Test
  void aSimpleTenantKeepsItsName() {
    assertThat(KubernetesNames.tenantNamespace("acme")).isEqualTo("kiln-tenant-acme");
    assertThat(KubernetesNames.labelValue("acme")).isEqualTo("acme");
  }

  @Test
  void namesThatReadAlikeStayApartAndEveryNameIsADnsLabel() {
    String[] tenants = {"a_b", "a-b", "A-B", "ünïcode", "", "x".repeat(200), "-", "a.b"};
    for (String t : tenants) {
      assertThat(KubernetesNames.tenantNamespace(t))
          .matches(DNS_LABEL)
          .hasSizeLessThanOrEqualTo(63);
      assertThat(KubernetesNames.workerName(t, "udf"))
          .matches(DNS_LABEL)
          .hasSizeLessThanOrEqualTo(63);
      assertThat(KubernetesNames.labelValue(t)).matches(DNS_LABEL).hasSizeLessThanOrEqualTo(63);
    }
    assertThat(KubernetesNames.tenantNamespace("a_b"))
        .isNotEqualTo(KubernetesNames.tenantNamespace("a-b"))
        .startsWith("kiln-tenant-a-b-");
    assertThat(KubernetesNames.workerName("a", "b-c"))
        .isNotEqualTo(KubernetesNames.workerName("a-b", "c"));
    assertThat(KubernetesNames.workerName("acme", "add_one")).startsWith("acme-add-one-");
  }
}
