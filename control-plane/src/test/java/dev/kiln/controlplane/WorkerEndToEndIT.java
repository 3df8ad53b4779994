package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kiln.controlplane.proto.resource.AlterWorkerRequest;
import dev.kiln.controlplane.proto.resource.AlterWorkerRequest.WorkerStateAction;
import dev.kiln.controlplane.proto.resource.CreateWorkerRequest;
import dev.kiln.controlplane.proto.resource.Worker;
import dev.kiln.definition.QueryScripts;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * Databend Query's WorkerService end to end, as their CI's cases drive it: a UDF through
 * CreateWorker with the script Query renders (real gVisor sandbox), the environment of their env
 * case from a --udf-env file, a worker's size, suspend and resume, and workers kept across a
 * restart.
 */
class WorkerEndToEndIT {
  @TempDir Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  private static final String READ_ENV =
      """
      import os

      def read_env() -> str:
          return os.getenv("UDF_ENV_TEST", "")
      """;

  private static String script() {
    return QueryScripts.udf(READ_ENV, "read_env").result("STRING NULL").render();
  }

  private String call(DatabendClient.Resource r) throws Exception {
    return String.valueOf(
        KilnTestSupport.call(allocator, r, "acme", "read_env", List.of(), "[[]]").get(0).get(0));
  }

  @Test
  void theirEnvCaseThenAChangedValueSuspendResumeAndARestart() throws Exception {
    Path envFile =
        Files.writeString(
            dir.resolve("udf_env.toml"),
            "[udf_env]\n\"acme.read_env\" = { UDF_ENV_TEST = \"sandbox_env_ok\" }\n");
    Path data = dir.resolve("data");
    try (RunningKiln kiln = RunningKiln.start(data, b -> b.set("udf-env", envFile.toString()))) {
      DatabendClient api = kiln.api();
      DatabendClient.Resource r =
          api.createWorker("acme", "read_env", script(), Duration.ofSeconds(5));
      assertThat(call(r)).isEqualTo("sandbox_env_ok");

      // A changed value takes effect on a next query (the file is looked at once a second).
      Files.writeString(envFile, "[udf_env]\n\"acme.read_env\" = { UDF_ENV_TEST = \"changed\" }\n");
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      String seen = "sandbox_env_ok";
      while (!seen.equals("changed")) {
        assertThat(System.nanoTime()).as("the new value is used in time").isLessThan(deadline);
        seen = call(api.createWorker("acme", "read_env", script(), Duration.ofSeconds(5)));
      }

      // SUSPEND stops its sandboxes; the next query resumes it (auto_resume defaults to true).
      api.workers("acme", Duration.ofSeconds(5))
          .alterWorker(
              AlterWorkerRequest.newBuilder()
                  .setTenantId("acme")
                  .setName("read_env")
                  .setStateAction(WorkerStateAction.Suspend)
                  .build());
      assertThat(kiln.server().meters().get("kiln.sandboxes.running").gauge().value())
          .as("its sandboxes are stopped")
          .isZero();
      assertThat(call(api.createWorker("acme", "read_env", script(), Duration.ofSeconds(5))))
          .isEqualTo("changed");

      // A worker of its own size.
      api.workers("acme", Duration.ofSeconds(5))
          .createWorker(
              CreateWorkerRequest.newBuilder()
                  .setTenantId("acme")
                  .setName("sized")
                  .putOptions("size", "medium")
                  .build());
      String sized =
          QueryScripts.udf("import os\ndef sized() -> int:\n    return os.cpu_count()\n", "sized")
              .result("INT32 NULL")
              .render();
      DatabendClient.Resource s = api.createWorker("acme", "sized", sized, Duration.ofSeconds(5));
      assertThat(
              KilnTestSupport.call(allocator, s, "acme", "sized", List.of(), "[[]]").get(0).get(0))
          .as("a medium sandbox has 2 CPUs")
          .isEqualTo(2);
    }
    // Workers survive a restart.
    try (RunningKiln kiln = RunningKiln.start(data, b -> b.set("udf-env", envFile.toString()))) {
      List<Worker> workers = kiln.api().listWorkers("acme", Duration.ofSeconds(5));
      assertThat(workers).extracting(Worker::getName).containsExactly("read_env", "sized");
      assertThat(workers.get(1).getOptionsMap()).containsEntry("size", "medium");
    }
  }

  @Test
  void anIdleWorkerIsSuspendedAfterItsAutoSuspendAndTheNextQueryResumesIt() throws Exception {
    try (RunningKiln kiln = RunningKiln.start(dir.resolve("idle"))) {
      DatabendClient api = kiln.api();
      api.workers("acme", Duration.ofSeconds(5))
          .createWorker(
              CreateWorkerRequest.newBuilder()
                  .setTenantId("acme")
                  .setName("read_env")
                  .putOptions("auto_suspend", "1")
                  .build());
      DatabendClient.Resource r =
          api.createWorker("acme", "read_env", script(), Duration.ofSeconds(5));
      assertThat(call(r)).isEmpty();
      // Poll (with a deadline) until the server has suspended it after a second without calls.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
      while (!api.listWorkers("acme", Duration.ofSeconds(5))
          .get(0)
          .getOptionsMap()
          .get("state")
          .equals("suspended")) {
        assertThat(System.nanoTime()).as("suspended in time").isLessThan(deadline);
        LockSupport.parkNanos(TimeUnit.MILLISECONDS.toNanos(50));
      }
      assertThat(kiln.server().meters().get("kiln.sandboxes.running").gauge().value()).isZero();
      // auto_resume defaults to true: the next query starts it again.
      assertThat(call(api.createWorker("acme", "read_env", script(), Duration.ofSeconds(5))))
          .isEmpty();
      assertThat(api.listWorkers("acme", Duration.ofSeconds(5)).get(0).getOptionsMap())
          .containsEntry("state", "running");
    }
  }
}
