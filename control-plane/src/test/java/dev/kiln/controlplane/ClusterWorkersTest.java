package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.definition.Tenant;
import dev.kiln.provisioner.kubernetes.KubernetesMock;
import dev.kiln.provisioner.kubernetes.KubernetesSettings;
import dev.kiln.provisioner.kubernetes.WorkerRecords;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Databend's workers kept in the cluster, against fabric8's mock API server in CRUD mode ({@link
 * KubernetesMock}: the one fake, since no Kubernetes API server can be installed here).
 */
class ClusterWorkersTest {
  private static final Instant NOW = Instant.parse("2026-12-04T12:00:00Z");
  private static final Tenant ACME = new Tenant("acme");

  @TempDir Path dir;
  private KubernetesMock mock;
  private WorkerRecords records;
  private ClusterWorkers workers;

  @BeforeEach
  void start() throws Exception {
    mock = new KubernetesMock();
    records = WorkerRecords.start(mock.client(), KubernetesSettings.defaults("kiln"));
    workers = new ClusterWorkers(records);
  }

  @AfterEach
  void stop() {
    mock.close(); // first: see KubernetesMock#close
    records.close();
  }

  @Test
  void aWorkerReadsBackAsItWasWrittenWithItsStateAndKey() throws Exception {
    Workers.Worker w =
        Workers.Worker.create("w1", Map.of("team", "ml"), Map.of("size", "small"), NOW)
            .withKey("ab".repeat(32), NOW)
            .withState(Workers.State.SUSPENDED, NOW.plusSeconds(1));
    assertThat(workers.update(ACME, "w1", old -> w)).isEqualTo(w);
    assertThat(workers.get(ACME, "w1")).contains(w);
    assertThat(workers.list(ACME)).containsExactly(w);
    assertThat(workers.all()).isEqualTo(Map.of("acme", List.of(w)));
    assertThat(workers.list(new Tenant("other"))).isEmpty();
    // Resumed by a query (auto_resume), for every replica.
    Workers.Worker resumed = workers.resumeIfSuspended(ACME, w, true, NOW.plusSeconds(2));
    assertThat(resumed.state()).isEqualTo(Workers.State.RUNNING);
    assertThat(new ClusterWorkers(records).get(ACME, "w1")).contains(resumed);
    assertThat(workers.update(ACME, "w1", old -> null)).isNull();
    assertThat(workers.get(ACME, "w1")).isEmpty();
  }

  @Test
  void aSingleServersWorkersMoveIntoTheClusterOnceKeepingTheClustersOwn() throws Exception {
    Path file = dir.resolve(FileWorkers.FILE);
    FileWorkers local = FileWorkers.open(file);
    Workers.Worker mine = Workers.Worker.create("mine", Map.of(), Map.of("size", "small"), NOW);
    local.update(ACME, "mine", old -> mine);
    local.update(ACME, "both", old -> Workers.Worker.create("both", Map.of(), Map.of(), NOW));
    Workers.Worker theirs =
        Workers.Worker.create("both", Map.of("from", "cluster"), Map.of(), NOW.minusSeconds(60));
    workers.update(ACME, "both", old -> theirs);

    assertThat(workers.adopt(file)).isEqualTo(1);
    assertThat(workers.list(ACME)).containsExactly(theirs, mine);
    assertThat(file).doesNotExist();
    assertThat(Files.exists(dir.resolve("workers.json.moved-to-cluster"))).isTrue();
    assertThat(workers.adopt(file)).as("nothing left to move").isZero();
  }
}
