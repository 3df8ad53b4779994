package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.StagedImport;
import dev.kiln.definition.Tenant;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.egress.EgressPolicy;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The kept definitions: what is written is read back as it was, and a damaged store still opens.
 */
class DefinitionsTest {
  @TempDir Path dir;

  private static final String SPEC =
      KilnTestSupport.spec(
          "f",
          List.of("INT NULL", "TUPLE(1 INT32, 2 STRING) NULL"),
          "VARCHAR NULL",
          List.of("@s/a.py"),
          List.of("humanize==4.9.0"),
          "# /// script\n# dependencies = [\"numpy\"]\n# ///\ndef f(x, y):\n    return \"é\\\\\"\n");

  private static Definitions.Entry entry(String tenant, String owner) throws Exception {
    UdfDefinition d =
        UdfDefinition.fromSpec(
            SPEC,
            List.of(
                new StagedImport(
                    "@s/a.py", "http://stage/a.py?sig=1", Map.of("host", "stage:9000"), "etag-1")));
    return new Definitions.Entry(
        new Tenant(tenant),
        new ContentKey("ab".repeat(32)),
        d,
        // A worker's GPUs are kept with its size (a worker without any has 0).
        new Sizing("small", 1.0, 512L << 20, 1, owner == null ? 0 : 1),
        owner,
        // A worker's egress allow-list is kept (ApplyUdfResource's, here none, too).
        owner == null
            ? UdfEgress.NONE
            : new UdfEgress(EgressPolicy.parse("*.amazonaws.com,api.example.com:443"), null),
        Instant.parse("2026-12-03T10:00:00Z"));
  }

  @Test
  void whatIsKeptIsReadBackAsItWasAfterAReopen() throws Exception {
    Definitions d = Definitions.open(dir);
    Definitions.Entry plain = entry("acme", null);
    Definitions.Entry odd = entry("ten ant/../é", "read_env");
    assertThat(d.put(plain)).isTrue();
    assertThat(d.put(odd)).isTrue();

    Definitions again = Definitions.open(dir);
    assertThat(again.size()).isEqualTo(2);
    assertThat(again.get(new Tenant("acme"), plain.key())).contains(plain);
    assertThat(again.get(new Tenant("ten ant/../é"), odd.key())).contains(odd);
    assertThat(again.get(new Tenant("globex"), plain.key())).isEmpty();
    try (var files = Files.walk(dir)) {
      assertThat(files.filter(Files::isRegularFile).map(p -> dir.relativize(p).getName(0)))
          .as("one directory per tenant, none outside the store")
          .extracting(Path::toString)
          .containsExactlyInAnyOrder("acme", Definitions.directoryOf(new Tenant("ten ant/../é")));
    }
  }

  @Test
  void aDroppedWorkersDefinitionsAreForgottenOnDiskToo() throws Exception {
    Definitions d = Definitions.open(dir);
    d.put(entry("acme", "read_env"));
    d.put(entry("globex", "read_env"));
    assertThat(d.removeOwned(new Tenant("acme"), "read_env")).isEqualTo(1);
    Definitions again = Definitions.open(dir);
    assertThat(again.size()).isEqualTo(1);
    assertThat(again.all()).extracting(e -> e.tenant().name()).containsExactly("globex");
  }

  @Test
  void recordsNotAskedForSinceTheCutOffAndNotLiveAreForgotten() throws Exception {
    Definitions d = Definitions.open(dir);
    Definitions.Entry old = entry("acme", null); // answered 2026-12-03T10:00Z
    Definitions.Entry live = entry("live", null);
    Definitions.Entry recent = entry("recent", null);
    d.put(old);
    d.put(live);
    d.put(recent);
    d.used(new Tenant("recent"), recent.key(), Instant.parse("2026-12-04T09:00:00Z"));
    Instant cutoff = Instant.parse("2026-12-04T08:00:00Z");

    Definitions.Collected dry = d.collect((t, k) -> t.name().equals("live"), cutoff, true);
    assertThat(dry.records()).isEqualTo(1);
    assertThat(dry.bytes()).isPositive();
    assertThat(d.size()).as("a dry run forgets nothing").isEqualTo(3);

    assertThat(d.collect((t, k) -> t.name().equals("live"), cutoff, false).records()).isEqualTo(1);
    assertThat(d.get(new Tenant("acme"), old.key())).isEmpty();
    Definitions again = Definitions.open(dir);
    assertThat(again.all())
        .extracting(e -> e.tenant().name())
        .containsExactlyInAnyOrder("live", "recent");
  }

  @Test
  void anInterruptedWriteAndADamagedRecordAreSkipped() throws Exception {
    Definitions d = Definitions.open(dir);
    Definitions.Entry kept = entry("acme", null);
    d.put(kept);
    Path tenantDir = dir.resolve("acme");
    Path half = Files.writeString(tenantDir.resolve("cd".repeat(32) + ".json.7.tmp"), "{\"form");
    Files.writeString(tenantDir.resolve("ef".repeat(32) + ".json"), "{\"format\":1,\"spec\":");

    Definitions again = Definitions.open(dir);
    assertThat(again.all()).containsExactly(kept);
    assertThat(half).as("a crash's leftover is cleaned up").doesNotExist();
  }
}
