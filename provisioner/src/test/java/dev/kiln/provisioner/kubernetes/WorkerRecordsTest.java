package dev.kiln.provisioner.kubernetes;

import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.client.KubernetesClient;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Records two Kiln replicas share, against fabric8's mock API server in CRUD mode ({@link
 * KubernetesMock}: the one fake, since no Kubernetes API server can be installed here). Each
 * replica has its own client and cache.
 */
class WorkerRecordsTest {
  private static final Duration WAIT = Duration.ofSeconds(20);

  private final KubernetesSettings settings = KubernetesSettings.defaults("kiln");
  private final List<AutoCloseable> open = new ArrayList<>();
  private final ExecutorService threads = Executors.newCachedThreadPool();
  private KubernetesMock mock;

  @BeforeEach
  void start() throws Exception {
    mock = new KubernetesMock();
  }

  @AfterEach
  void stop() throws Exception {
    threads.shutdownNow();
    mock.close(); // first: see KubernetesMock#close
    for (AutoCloseable c : open.reversed()) {
      c.close();
    }
  }

  private WorkerRecords replica() {
    KubernetesClient c = mock.client();
    WorkerRecords r = WorkerRecords.start(c, settings);
    open.add(r);
    return r;
  }

  @Test
  void aRecordOneReplicaWritesIsReadAtOnceByItAndByAnother() throws Exception {
    WorkerRecords a = replica();
    WorkerRecords b = replica();
    assertThat(a.update("acme", "w1", old -> old == null ? "one" : old)).isEqualTo("one");
    // Read back at once by the writer, and by the other replica before its watch brings it.
    assertThat(a.get("acme", "w1")).contains("one");
    assertThat(b.get("acme", "w1")).contains("one");
    assertThat(b.get("acme", "nope")).isEmpty();
    assertThat(b.all()).isEqualTo(Map.of("acme", Map.of("w1", "one")));

    ConfigMap kept =
        mock.client()
            .configMaps()
            .inNamespace("kiln")
            .withName(WorkerRecords.configMapName("acme", "w1"))
            .get();
    assertThat(kept.getMetadata().getLabels())
        .containsEntry(KubernetesNames.COMPONENT, WorkerRecords.COMPONENT)
        .containsEntry(KubernetesNames.TENANT, "acme");
    assertThat(kept.getMetadata().getAnnotations())
        .containsEntry(WorkerRecords.TENANT, "acme")
        .containsEntry(WorkerRecords.NAME, "w1");

    assertThat(b.update("acme", "w1", old -> null)).isNull();
    assertThat(b.get("acme", "w1")).isEmpty();
    KubernetesMock.await("a sees it gone", WAIT, () -> a.all().isEmpty());
    assertThat(a.get("acme", "w1")).isEmpty();
  }

  @Test
  void anUnchangedRecordWritesNothing() {
    WorkerRecords a = replica();
    a.update("acme", "w1", old -> "one");
    String version = version("acme", "w1");
    assertThat(a.update("acme", "w1", old -> old)).isEqualTo("one");
    assertThat(version("acme", "w1")).isEqualTo(version);
  }

  @Test
  void twoReplicasChangingOneRecordAtOnceLoseNeitherChange() throws Exception {
    WorkerRecords a = replica();
    WorkerRecords b = replica();
    a.update("acme", "w1", old -> "");
    KubernetesMock.await("b sees it", WAIT, () -> b.all().containsKey("acme"));
    int each = 20;
    AtomicInteger computed = new AtomicInteger();
    List<Future<?>> writers = new ArrayList<>();
    for (WorkerRecords r : List.of(a, b)) {
      String mark = r == a ? "a" : "b";
      writers.add(
          threads.submit(
              () -> {
                for (int i = 0; i < each; i++) {
                  r.update(
                      "acme",
                      "w1",
                      old -> {
                        computed.incrementAndGet();
                        return old + mark;
                      });
                }
              }));
    }
    for (Future<?> w : writers) {
      w.get(WAIT.toSeconds(), TimeUnit.SECONDS);
    }
    String record =
        mock.client()
            .configMaps()
            .inNamespace("kiln")
            .withName(WorkerRecords.configMapName("acme", "w1"))
            .get()
            .getData()
            .get(WorkerRecords.DATA);
    assertThat(record).hasSize(2 * each);
    assertThat(record.chars().filter(ch -> ch == 'a').count()).isEqualTo(each);
    assertThat(computed.get()).isGreaterThanOrEqualTo(2 * each);
  }

  @Test
  void aReplicaIsToldOfWhatAnotherChanged() throws Exception {
    WorkerRecords a = replica();
    WorkerRecords b = replica();
    LinkedBlockingQueue<String> toldA = new LinkedBlockingQueue<>();
    LinkedBlockingQueue<String> toldB = new LinkedBlockingQueue<>();
    a.listen((tenant, name) -> toldA.add(tenant + "/" + name + "=" + a.get(tenant, name)));
    b.listen((tenant, name) -> toldB.add(tenant + "/" + name + "=" + b.get(tenant, name)));

    a.update("acme", "w1", old -> "running");
    told(toldB, "acme/w1=" + Optional.of("running"));
    b.update("acme", "w1", old -> "suspended");
    told(toldA, "acme/w1=" + Optional.of("suspended"));
    b.update("acme", "w1", old -> null);
    told(toldA, "acme/w1=" + Optional.empty());
  }

  /** Waits until the listener was told {@code what} (it may be told of its own writes first). */
  private static void told(LinkedBlockingQueue<String> queue, String what)
      throws InterruptedException {
    long deadline = System.nanoTime() + WAIT.toNanos();
    List<String> other = new ArrayList<>();
    for (String s; (s = queue.poll(deadline - System.nanoTime(), TimeUnit.NANOSECONDS)) != null; ) {
      if (s.equals(what)) {
        return;
      }
      other.add(s);
    }
    throw new AssertionError("not told " + what + " within " + WAIT + "; told " + other);
  }

  @Test
  void namesThatReadAlikeAreTwoRecords() {
    WorkerRecords a = replica();
    a.update("acme", "My_Worker", old -> "one");
    a.update("acme", "my-worker", old -> "two");
    a.update("acme-my", "worker", old -> "three");
    assertThat(a.all())
        .isEqualTo(
            Map.of(
                "acme", Map.of("My_Worker", "one", "my-worker", "two"),
                "acme-my", Map.of("worker", "three")));
    WorkerRecords b = replica();
    assertThat(b.get("acme", "My_Worker")).contains("one");
    assertThat(b.get("acme-my", "worker")).contains("three");
  }

  private String version(String tenant, String name) {
    return mock.client()
        .configMaps()
        .inNamespace("kiln")
        .withName(WorkerRecords.configMapName(tenant, name))
        .get()
        .getMetadata()
        .getResourceVersion();
  }
}
