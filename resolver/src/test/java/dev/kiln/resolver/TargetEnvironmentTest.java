package dev.kiln.resolver;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;

class TargetEnvironmentTest {
  @Test
  void readsTheProbeOfTheDefaultBase() {
    TargetEnvironment t = Targets.defaultBase();
    assertThat(t.pythonVersion()).isEqualTo("3.11.2");
    assertThat(t.pythonMinor()).isEqualTo("3.11");
    assertThat(t.purelib()).isEqualTo("/usr/local/lib/python3.11/dist-packages");
    assertThat(t.interpreter()).isEqualTo("/usr/bin/python3");
    assertThat(t.markerEnvironment())
        .containsEntry("python_version", "3.11")
        .containsEntry("python_full_version", "3.11.2")
        .containsEntry("sys_platform", "linux")
        .containsEntry("platform_machine", "x86_64")
        .containsEntry("platform_python_implementation", "CPython")
        .containsEntry("implementation_name", "cpython");
  }

  @Test
  void probeJsonRoundTrips() throws Exception {
    TargetEnvironment t = Targets.python312();
    assertThat(TargetEnvironment.fromProbeJson(t.toProbeJson())).isEqualTo(t);
  }

  @Test
  void tagsForCpython311OnGlibcX86_64ComeInPipsOrder() {
    List<String> tags = Targets.defaultBase().compatibleTags();
    assertThat(tags.get(0)).isEqualTo("cp311-cp311-manylinux_2_36_x86_64");
    assertThat(tags)
        .containsSubsequence(
            "cp311-cp311-manylinux_2_36_x86_64",
            "cp311-cp311-manylinux_2_17_x86_64",
            "cp311-cp311-manylinux2014_x86_64",
            "cp311-cp311-manylinux1_x86_64",
            "cp311-cp311-linux_x86_64",
            "cp311-abi3-manylinux_2_36_x86_64",
            "cp311-none-manylinux_2_36_x86_64",
            "cp310-abi3-manylinux_2_28_x86_64",
            "cp32-abi3-linux_x86_64",
            "py311-none-manylinux_2_17_x86_64",
            "py3-none-linux_x86_64",
            "cp311-none-any",
            "py311-none-any",
            "py3-none-any",
            "py30-none-any");
    assertThat(tags)
        .doesNotContain(
            "cp312-cp312-manylinux_2_36_x86_64",
            "cp311-cp311-manylinux_2_37_x86_64",
            "cp311-cp311-musllinux_1_2_x86_64",
            "cp311-cp311-manylinux_2_17_aarch64",
            "py2-none-any");
    assertThat(tags).doesNotHaveDuplicates();
  }

  @Test
  void tagsForOtherPlatforms() {
    List<String> arm = Targets.aarch64().compatibleTags();
    assertThat(arm.get(0)).isEqualTo("cp311-cp311-manylinux_2_36_aarch64");
    assertThat(arm)
        .contains("cp311-cp311-manylinux2014_aarch64", "cp311-cp311-manylinux_2_17_aarch64")
        .doesNotContain("cp311-cp311-manylinux_2_16_aarch64", "cp311-cp311-manylinux1_aarch64");
    List<String> musl = Targets.musl().compatibleTags();
    assertThat(musl)
        .startsWith(
            "cp311-cp311-musllinux_1_2_x86_64",
            "cp311-cp311-musllinux_1_1_x86_64",
            "cp311-cp311-musllinux_1_0_x86_64",
            "cp311-cp311-linux_x86_64");
    assertThat(musl).noneMatch(t -> t.contains("manylinux"));
    TargetEnvironment freeThreaded =
        new TargetEnvironment(
            "3.13.1",
            "cpython",
            "cpython-313t-x86_64-linux-gnu",
            "x86_64",
            "glibc",
            "2.36",
            "/p",
            "/p",
            "/b",
            "/d",
            "/i",
            "/usr/bin/python3");
    assertThat(freeThreaded.compatibleTags())
        .startsWith("cp313-cp313t-manylinux_2_36_x86_64")
        .noneMatch(t -> t.contains("abi3"));
  }

  @Test
  void theProbeScriptRunsWithARealPython() throws Exception {
    Process p =
        new ProcessBuilder("python3", "-I", "-c", TargetEnvironment.probeScript())
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).isZero();
    TargetEnvironment host = TargetEnvironment.fromProbeJson(out);
    assertThat(host.implementation()).isEqualTo("cpython");
    assertThat(host.pythonVersion()).startsWith("3.");
    assertThat(host.libc()).isEqualTo("glibc");
    assertThat(host.libcVersion()).matches("2\\.\\d+");
    assertThat(host.purelib()).contains("python3");
    assertThat(host.compatibleTags().get(0)).startsWith("cp3");
  }

  @Test
  void badProbeOutputSaysWhatIsWrong() {
    assertThatThrownBy(() -> TargetEnvironment.fromProbeJson("Traceback (most recent call last)"))
        .hasMessageContaining("did not print JSON")
        .hasMessageContaining("Traceback");
    assertThatThrownBy(() -> TargetEnvironment.fromProbeJson("{\"python_version\": \"3.11.2\"}"))
        .hasMessageContaining("lacks implementation, soabi");
  }
}
