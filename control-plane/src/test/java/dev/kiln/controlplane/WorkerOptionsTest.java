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
    WorkerSizes pods = WorkerSizes.of(List.of()).withGpus();
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
                    Map.of("gpu", "many"), WorkerSizes.of(List.of()).withGpus(), Duration.ZERO))
        .hasMessageContaining("gpu 'many' is not a count of GPUs from 0 to 16");
  }
}
