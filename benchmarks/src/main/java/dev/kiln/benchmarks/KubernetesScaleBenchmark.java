package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnConfigBuilder;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.image.LocalRegistry;
import dev.kiln.provisioner.kubernetes.KubeletStandIn;
import dev.kiln.provisioner.kubernetes.KubernetesCaches;
import dev.kiln.provisioner.kubernetes.KubernetesMock;
import dev.kiln.provisioner.kubernetes.KubernetesNames;
import dev.kiln.provisioner.kubernetes.KubernetesProvisioner;
import dev.kiln.provisioner.kubernetes.KubernetesSettings;
import dev.kiln.provisioner.kubernetes.UdfWorker;
import dev.kiln.provisioner.kubernetes.UdfWorkerReconciler;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;

/**
 * A Kiln replica's memory and reconcile time with many UdfWorker resources: N workers on fabric8's
 * mock API server (CRUD mode; no real API server can run here), then the heap a replica's informers
 * hold for them (the pod provisioner's and the reconciler's caches, after a full GC), next to the
 * size of the same resources as JSON and as plain objects in a list (the peer, same run), and the
 * time the leader takes to give every worker its first status. Workers have no image yet, so no pod
 * is made: the figures are the control plane's own.
 *
 * <p>Run: {@code bin/bench kubernetes [WORKERS, default 10000]}. With HOT_CALLS ({@code bin/bench
 * kubernetes 10000 300}), also CreateWorker cold and hot through pods, next to a local server, and
 * a numpy + pandas UDF's cold start through a pod next to the local one (with the local mirror).
 */
final class KubernetesScaleBenchmark {
  private KubernetesScaleBenchmark() {}

  public static void main(String[] args) throws Exception {
    int n = args.length > 0 ? Integer.parseInt(args[0]) : 10_000;
    int hotCalls = args.length > 1 ? Integer.parseInt(args[1]) : 0;
    Logger.getLogger("io.fabric8.mockwebserver").setLevel(Level.WARNING);
    try (KubernetesMock server = new KubernetesMock(Path.of("deploy", "kubernetes"))) {
      KubernetesClient client = server.client();
      long t0 = System.nanoTime();
      create(client, n);
      double createS = (System.nanoTime() - t0) / 1e9;
      System.out.printf(
          "created %d UdfWorkers in %.1f s (%.0f/s, 8 at once)%n", n, createS, n / createS);

      List<UdfWorker> listed =
          client.resources(UdfWorker.class).inNamespace("kiln").list().getItems();
      long json = Serialization.asJson(listed).getBytes(StandardCharsets.UTF_8).length;
      long base = heap();
      List<UdfWorker> plain = new ArrayList<>();
      for (UdfWorker w : listed) {
        plain.add(Serialization.unmarshal(Serialization.asJson(w), UdfWorker.class));
      }
      listed = null;
      long plainBytes = heap() - base;
      System.out.printf(
          "peer: %d workers as JSON %.1f MiB; as plain objects in a list %.1f MiB (%d bytes each)%n",
          plain.size(), json / 1048576.0, plainBytes / 1048576.0, plainBytes / plain.size());
      plain = null;

      KubernetesSettings settings =
          KubernetesSettings.defaults("kiln").withLeaseDuration(Duration.ofSeconds(5));
      base = heap();
      long t1 = System.nanoTime();
      try (KubernetesClient replica = server.client();
          KubernetesCaches caches = KubernetesCaches.start(replica, settings);
          KubernetesProvisioner pods =
              new KubernetesProvisioner(replica, caches, settings, Duration.ofMinutes(1), "bench");
          UdfWorkerReconciler reconciler =
              new UdfWorkerReconciler(replica, caches, settings, "bench")) {
        double syncS = (System.nanoTime() - t1) / 1e9;
        // Before the reconciler leads: its status writes grow the mock's store (same process).
        long held = heap() - base;
        System.out.printf(
            "a replica's caches (workers and pods, shared by its reconciler and pod provisioner)"
                + " synced in %.1f s; heap held %.1f MiB (%d bytes per worker)%n",
            syncS, held / 1048576.0, held / n);
        reconciler.start();
        long t3 = System.nanoTime();
        long deadline = t3 + Duration.ofMinutes(10).toNanos();
        while (waiting(client) < n) {
          if (System.nanoTime() > deadline) {
            throw new IllegalStateException("the reconciler did not reach every worker in time");
          }
          Thread.sleep(200);
        }
        double passS = (System.nanoTime() - t3) / 1e9;
        System.out.printf(
            "the leader's first pass over %d workers (every status written, the mock API server"
                + " in this process): %.1f s (%.0f/s)%n",
            n, passS, n / passS);
      }
      if (hotCalls > 0) {
        createWorker(server, hotCalls);
      }
    }
  }

  /**
   * Databend's CreateWorker against two servers in one run: the peer with local gVisor sandboxes,
   * then {@code kiln serve --kubernetes} on the mock holding the workers made above (its caches
   * hold them all), its pods run by the test stand-in for a kubelet (KubeletStandIn: gVisor on a
   * network namespace), its images pushed to a real registry.
   */
  private static void createWorker(KubernetesMock api, int hotCalls) throws Exception {
    Path tmp = Files.createTempDirectory("kiln-kubernetes-bench");
    Path mirror = Path.of(System.getProperty("kiln.bench.mirror", "/opt/pypi"));
    MirrorServer index =
        Files.isDirectory(mirror.resolve("simple")) ? MirrorServer.start(mirror) : null;
    try (LocalRegistry registry = LocalRegistry.start(tmp.resolve("registry"));
        KubeletStandIn kubelet = new KubeletStandIn(api.client(), tmp.resolve("node")).start()) {
      ObjectNode local;
      double localPackages;
      try (KilnServer s = KilnServer.start(server(tmp.resolve("local"), index).build());
          DatabendClient c = new DatabendClient("127.0.0.1:" + s.grpcPort());
          BufferAllocator a = new RootAllocator()) {
        local = CreateWorkerBench.run(s, c, a, hotCalls);
        localPackages = index == null ? -1 : PackageColdStart.firstResult(c, a, "np_a", 1);
      }
      Path kubeconfig = api.kubeconfig(tmp);
      ObjectNode pods;
      double podPackages;
      try (KilnServer s =
              KilnServer.start(
                  server(tmp.resolve("pods"), index)
                      .registry("127.0.0.1:" + registry.port() + "/kiln", false)
                      .kubernetes(kubeconfig, "kiln")
                      .build());
          DatabendClient c = new DatabendClient("127.0.0.1:" + s.grpcPort());
          BufferAllocator a = new RootAllocator()) {
        pods = CreateWorkerBench.run(s, c, a, hotCalls);
        podPackages = index == null ? -1 : PackageColdStart.firstResult(c, a, "np_a", 1);
      }
      System.out.println("peer, local gVisor sandboxes:");
      CreateWorkerBench.print(local);
      System.out.println(
          "kiln serve --kubernetes (pods run by the stand-in), the workers above in its caches:");
      CreateWorkerBench.print(pods);
      if (index == null) {
        System.out.println("numpy + pandas: skipped, no local PyPI mirror at " + mirror);
      } else {
        System.out.printf(
            "numpy + pandas UDF, nothing cached but the index, request -> first result: local"
                + " %.2f s, through a pod %.2f s (image pushed, pulled by the stand-in, started)%n",
            localPackages / 1e3, podPackages / 1e3);
      }
    } finally {
      if (index != null) {
        index.stop();
      }
      try (var files = Files.walk(tmp)) {
        files.sorted(java.util.Comparator.reverseOrder()).forEach(f -> f.toFile().delete());
      }
    }
  }

  /**
   * A benchmark server on {@code data}, resolving packages from {@code index} when there is one.
   */
  private static KilnConfigBuilder server(Path data, MirrorServer index) {
    KilnConfigBuilder b = ColdStartBenchmark.localServer(data);
    return index == null ? b : b.set("index-url", index.uri("simple/").toString());
  }

  private static void create(KubernetesClient client, int n) throws Exception {
    try (ExecutorService pool = Executors.newFixedThreadPool(8)) {
      List<Future<?>> done = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        int id = i;
        done.add(
            pool.submit(
                () -> {
                  String tenant = "tenant-" + (id % 100);
                  String udf = "udf_" + id;
                  UdfWorker w = new UdfWorker();
                  w.getMetadata().setName(KubernetesNames.workerName(tenant, udf));
                  w.getMetadata().setNamespace("kiln");
                  w.getSpec().setTenant(tenant);
                  w.getSpec().setUdf(udf);
                  w.getSpec().setKey(String.format("%064x", id));
                  w.getSpec()
                      .setCommand(
                          List.of(
                              "python3", "/kiln/runner/kiln_runner.py", "listen", "0.0.0.0:7070"));
                  w.getSpec().setEnv(Map.of("MODEL", "small"));
                  w.setStatus(null);
                  client.resource(w).create();
                }));
      }
      for (Future<?> f : done) {
        f.get();
      }
    }
  }

  private static long waiting(KubernetesClient client) {
    return client.resources(UdfWorker.class).inNamespace("kiln").list().getItems().stream()
        .filter(w -> w.getStatus() != null && "Waiting".equals(w.getStatus().getPhase()))
        .count();
  }

  /** Heap in use after a full collection. */
  private static long heap() throws InterruptedException {
    for (int i = 0; i < 3; i++) {
      System.gc();
      Thread.sleep(100);
    }
    return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
  }
}
