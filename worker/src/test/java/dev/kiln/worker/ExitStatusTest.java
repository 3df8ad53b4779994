package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class ExitStatusTest {

  @Test
  void signalsAreNamed() {
    assertThat(ExitStatus.describe(134)).isEqualTo("killed by SIGABRT");
    assertThat(ExitStatus.describe(139)).isEqualTo("killed by SIGSEGV");
    assertThat(ExitStatus.describe(137)).startsWith("killed by SIGKILL").contains("memory limit");
    assertThat(ExitStatus.describe(128 + 40)).isEqualTo("killed by signal 40");
  }

  @Test
  void exitCodesAreExitCodes() {
    assertThat(ExitStatus.describe(0)).isEqualTo("exited with status 0");
    assertThat(ExitStatus.describe(3)).isEqualTo("exited with status 3");
    assertThat(ExitStatus.describe(128)).isEqualTo("exited with status 128");
    assertThat(ExitStatus.describe(255)).isEqualTo("exited with status 255");
  }
}
