package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class WorkerOptionsTest {
  private static final Sizing SERVER = new Sizing(Sizing.DEFAULT, 1, 512L << 20, 1);

  @Test
  void aGpuCountGoesToTheSandboxesOfAServerWhoseSandboxesArePods() throws Exception {
    WorkerSizes pods = WorkerSizes.of(List.of()).forPods();
    WorkerOptions o = WorkerOptions.parse(Map.of("gpu", "2", "size", "large"), pods, Duration.ZERO);
    Sizing s = o.sizing(SERVER);
    assertThat(s.gpus()).isEqualTo(2);
    assertThat(s.cpus()).isEqualTo(4);
    assertThat(s.limits().gpus()).isEqualTo(2);
    assertThat(s.toString()).contains("2 GPUs");
    assertThat(WorkerOptions.parse(Map.of(), pods, Duration.ZERO).sizing(SERVER).gpus()).isZero();
  }

  @Test
  void aGpuOnLocalSandboxesOrABadCountIsRefusedNamingWhatToDo() throws Exception {
    WorkerSizes local = WorkerSizes.of(List.of());
    assertThat(WorkerOptions.parse(Map.of("gpu", "0"), local, Duration.ZERO).gpus()).isZero();
    assertThatThrownBy(() -> WorkerOptions.parse(Map.of("gpu", "1"), local, Duration.ZERO))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.INVALID_WORKER_OPTION))
        .hasMessageContaining("gpu '1': this server's sandboxes are local gVisor sandboxes")
        .hasMessageContaining("kiln serve --kubernetes");
    assertThatThrownBy(
            () ->
                WorkerOptions.parse(
                    Map.of("gpu", "many"), WorkerSizes.of(List.of()).forPods(), Duration.ZERO))
        .hasMessageContaining("gpu 'many' is not a count of GPUs from 0 to 16");
  }

  @Test
  void anEgressListIsCheckedAndEveryBadPatternNamed() throws Exception {
    WorkerSizes local = WorkerSizes.of(List.of());
    WorkerOptions o =
        WorkerOptions.parse(
            Map.of("egress", " *.amazonaws.com , api.example.com:443,10.1.2.3"),
            local,
            Duration.ZERO);
    assertThat(o.egress().toString()).isEqualTo("*.amazonaws.com,api.example.com:443,10.1.2.3");
    assertThat(WorkerOptions.parse(Map.of(), local, Duration.ZERO).egress().isEmpty()).isTrue();
    assertThatThrownBy(
            () ->
                WorkerOptions.parse(
                    Map.of("egress", "api.example.com,*,http://x.test/path"), local, Duration.ZERO))
        .isInstanceOf(KilnException.class)
        .satisfies(
            e -> assertThat(((KilnException) e).code()).isEqualTo(ErrorCode.INVALID_WORKER_OPTION))
        .hasMessageContaining("'*'")
        .hasMessageContaining("'http://x.test/path'")
        .hasMessageContaining("egress (host patterns");
    // Sandboxes that are pods reach the egress proxy Deployment.
    assertThat(
            WorkerOptions.parse(
                    Map.of("egress", "api.example.com"),
                    WorkerSizes.of(List.of()).forPods(),
                    Duration.ZERO)
                .egress()
                .toString())
        .isEqualTo("api.example.com");
  }
}
