package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.Tenant;
import dev.kiln.egress.EgressPolicy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The operator's egress policy file: entries per tenant and per UDF, merged with a worker's. */
class EgressPoliciesTest {
  @TempDir Path dir;

  private Instant now = Instant.parse("2026-12-04T00:00:00Z");
  private final InstantSource clock = () -> now;
  private final Tenant acme = new Tenant("acme");

  @Test
  void aTenantEntryAndAUdfEntryAddUpWithTheWorkersOwnList() throws Exception {
    Path file =
        Files.writeString(
            dir.resolve("egress.toml"),
            """
            [udf_egress]
            "acme" = ["*.amazonaws.com"]
            "acme.fetch" = ["api.example.com:443", "*.amazonaws.com"]
            "other.fetch" = ["other.example.com"]
            """);
    EgressPolicies p = new EgressPolicies(file, clock);
    UdfEgress apply = p.forUdf(acme, "fetch");
    assertThat(apply.policy().toString()).isEqualTo("*.amazonaws.com,api.example.com:443");
    assertThat(apply.policyFile()).as("a refusal names the file").isEqualTo(file.toString());
    assertThat(p.forUdf(acme, "else").policy().toString()).isEqualTo("*.amazonaws.com");
    assertThat(p.forUdf(new Tenant("nobody"), "fetch").isEmpty()).isTrue();

    UdfEgress worker = p.forWorker(acme, "fetch", EgressPolicy.parse("models.example.com"));
    assertThat(worker.policy().toString())
        .isEqualTo("models.example.com,*.amazonaws.com,api.example.com:443");
    assertThat(worker.policyFile()).as("a worker's user changes it with ALTER WORKER").isNull();
    assertThat(worker.keyPart()).isNotEqualTo(apply.keyPart());
  }

  @Test
  void aBadEntryFailsOnlyItsUdfsNamingTheEntryAndPatternUntilTheFileIsFixed() throws Exception {
    Path file =
        Files.writeString(
            dir.resolve("egress.toml"),
            """
            [udf_egress]
            "acme.bad" = ["api.example.com", "*"]
            "acme.good" = "api.example.com"
            """);
    EgressPolicies p = new EgressPolicies(file, clock);
    assertThat(p.forUdf(acme, "good").policy().toString()).isEqualTo("api.example.com");
    assertThatThrownBy(() -> p.forUdf(acme, "bad"))
        .isInstanceOf(KilnException.class)
        .satisfies(
            e -> assertThat(((KilnException) e).code()).isEqualTo(ErrorCode.INVALID_CONFIGURATION))
        .hasMessageContaining("entry \"acme.bad\"")
        .hasMessageContaining("'*'")
        .hasMessageContaining(file.toString());

    // Fixed: read again at the next look a second later.
    Files.writeString(file, "[udf_egress]\n\"acme.bad\" = [\"api.example.com\"]\n");
    Files.setLastModifiedTime(
        file, java.nio.file.attribute.FileTime.from(Instant.now().plusSeconds(5)));
    now = now.plus(WatchedFile.CHECK_INTERVAL);
    assertThat(p.forUdf(acme, "bad").policy().toString()).isEqualTo("api.example.com");

    // Removed: nothing is granted any more.
    Files.delete(file);
    now = now.plus(Duration.ofSeconds(1));
    assertThat(p.forUdf(acme, "bad").isEmpty()).isTrue();
  }

  @Test
  void withoutAFileOnlyAWorkersOwnListCounts() throws Exception {
    EgressPolicies none = new EgressPolicies(null, clock);
    assertThat(none.forUdf(acme, "fetch")).isEqualTo(UdfEgress.NONE);
    assertThat(none.forWorker(acme, "w", EgressPolicy.NONE)).isEqualTo(UdfEgress.NONE);
    assertThat(none.forWorker(acme, "w", EgressPolicy.parse("a.test")).policy().toString())
        .isEqualTo("a.test");
  }
}
