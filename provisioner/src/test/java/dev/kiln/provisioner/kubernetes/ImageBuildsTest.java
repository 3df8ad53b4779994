package dev.kiln.provisioner.kubernetes;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import io.fabric8.kubernetes.client.KubernetesClient;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * One builder per worker image among replicas, against fabric8's mock API server in CRUD mode
 * ({@link KubernetesMock}: the one fake, since no Kubernetes API server can be installed here).
 * Each replica has its own client, caches and clock.
 */
class ImageBuildsTest {
  private static final Duration WAIT = Duration.ofSeconds(20);
  private static final String IMAGE = "localhost:5000/kiln/udf@sha256:" + "e".repeat(64);
  private static final Duration HOLD = Duration.ofMinutes(1);

  private final KubernetesSettings settings = KubernetesSettings.defaults("kiln");
  private final List<AutoCloseable> open = new ArrayList<>();
  private final ExecutorService threads = Executors.newCachedThreadPool();
  private KubernetesMock mock;
  private KubernetesClient client;

  /** A clock a test moves by hand. */
  private static final class Clock implements InstantSource {
    final AtomicReference<Instant> now =
        new AtomicReference<>(Instant.parse("2026-12-04T12:00:00Z"));

    @Override
    public Instant instant() {
      return now.get();
    }
  }

  @BeforeEach
  void start() throws Exception {
    mock = new KubernetesMock();
    client = mock.client();
    // The control plane declares the worker before its first token goes out; no image yet.
    KubernetesCaches caches = KubernetesCaches.start(client, settings);
    open.add(caches);
    KubernetesProvisioner declaring =
        new KubernetesProvisioner(client, caches, settings, WAIT, "declaring");
    open.add(declaring);
    declaring.declare("acme", "0123456789ab", "{}");
  }

  @AfterEach
  void stop() throws Exception {
    threads.shutdownNow();
    mock.close(); // first: see KubernetesMock#close
    for (AutoCloseable c : open.reversed()) {
      c.close();
    }
  }

  private ImageBuilds replica(String name, InstantSource clock) {
    KubernetesClient c = mock.client();
    KubernetesCaches caches = KubernetesCaches.start(c, settings);
    open.add(caches);
    ImageBuilds b = new ImageBuilds(c, caches, settings, name, HOLD, clock);
    open.add(b);
    return b;
  }

  private Future<Optional<String>> ask(ImageBuilds b, Duration maxWait) {
    return threads.submit(() -> b.imageOrHold("acme", "0123456789ab", maxWait));
  }

  private void setImage() {
    UdfWorker w = worker();
    w.getSpec().setImage(IMAGE);
    UdfWorker.replaceSpec(client, "kiln", w.getMetadata().getName(), w.getSpec());
  }

  private UdfWorker worker() {
    return KubernetesMock.worker(client, "acme", "0123456789ab");
  }

  @Test
  void ofReplicasAskingAtOnceOneBuildsAndTheOthersGetItsImage() throws Exception {
    List<Future<Optional<String>>> asks = new ArrayList<>();
    for (String name : List.of("kiln-a", "kiln-b", "kiln-c")) {
      asks.add(ask(replica(name, InstantSource.system()), WAIT));
    }
    KubernetesMock.await(
        "one replica holding the build",
        WAIT,
        () -> asks.stream().filter(Future::isDone).count() == 1);
    Future<Optional<String>> builder = asks.stream().filter(Future::isDone).findFirst().get();
    assertThat(builder.get()).as("the one that builds gets no image").isEmpty();
    assertThat(worker().getMetadata().getAnnotations()).containsKey(ImageBuilds.BUILDER);

    setImage(); // what the builder's first sandbox does
    for (Future<Optional<String>> a : asks) {
      if (a != builder) {
        assertThat(a.get(WAIT.toSeconds(), TimeUnit.SECONDS)).contains(IMAGE);
      }
    }
    // Once the image is there, nobody builds.
    assertThat(replica("kiln-d", InstantSource.system()).imageOrHold("acme", "0123456789ab", WAIT))
        .contains(IMAGE);
  }

  @Test
  void aBuildGivenUpIsTakenOverAndAHoldThatLapsesToo() throws Exception {
    Clock clockA = new Clock();
    Clock clockB = new Clock();
    ImageBuilds a = replica("kiln-a", clockA);
    ImageBuilds b = replica("kiln-b", clockB);
    assertThat(a.imageOrHold("acme", "0123456789ab", WAIT)).isEmpty();
    Future<Optional<String>> waiting = ask(b, WAIT);
    // a's build failed: it lets go, and b builds instead.
    a.release("acme", "0123456789ab");
    assertThat(waiting.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEmpty();
    assertThat(worker().getMetadata().getAnnotations())
        .containsEntry(ImageBuilds.BUILDER, "kiln-b");

    // b stops renewing (it died): once its hold lapses on a's clock, a takes the build.
    Future<Optional<String>> again = ask(a, WAIT);
    assertThat(again).isNotDone();
    clockA.now.set(clockA.now.get().plus(HOLD).plusSeconds(1));
    assertThat(again.get(WAIT.toSeconds(), TimeUnit.SECONDS)).isEmpty();
    assertThat(worker().getMetadata().getAnnotations())
        .containsEntry(ImageBuilds.BUILDER, "kiln-a");
  }

  @Test
  void waitingLongerThanAllowedNamesTheBuilder() throws Exception {
    ImageBuilds a = replica("kiln-a", InstantSource.system());
    ImageBuilds b = replica("kiln-b", InstantSource.system());
    assertThat(a.imageOrHold("acme", "0123456789ab", WAIT)).isEmpty();
    assertThatThrownBy(() -> b.imageOrHold("acme", "0123456789ab", Duration.ofMillis(300)))
        .hasMessageContaining("kiln-a has been building the image");
    // No worker yet (its request is a moment behind): made with the hold of the one that asks.
    assertThat(b.imageOrHold("acme", "ffffffffffff", WAIT)).isEmpty();
    UdfWorker made = KubernetesMock.worker(client, "acme", "ffffffffffff");
    assertThat(made.getMetadata().getAnnotations()).containsEntry(ImageBuilds.BUILDER, "kiln-b");
    assertThat(made.getSpec().getTenant()).isEqualTo("acme");
    assertThatThrownBy(() -> a.imageOrHold("acme", "ffffffffffff", Duration.ofMillis(300)))
        .hasMessageContaining("kiln-b has been building the image");
  }
}
