package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class OciSpecTest {
  private static final OciSpec.ProcessSpec INIT =
      new OciSpec.ProcessSpec(
          List.of("/usr/bin/python3", "-m", "runner"), List.of("A=1"), "/srv", 65534, 65534);

  @Test
  void processesRunAsTheUserWithoutCapabilities() {
    JsonNode p = OciSpec.process(INIT);
    assertThat(p.get("terminal").asBoolean()).isFalse();
    assertThat(p.get("user").get("uid").asInt()).isEqualTo(65534);
    assertThat(p.get("user").get("gid").asInt()).isEqualTo(65534);
    assertThat(p.get("args"))
        .extracting(JsonNode::asText)
        .containsExactly("/usr/bin/python3", "-m", "runner");
    assertThat(p.get("cwd").asText()).isEqualTo("/srv");
    for (String set : List.of("bounding", "effective", "inheritable", "permitted", "ambient")) {
      assertThat(p.get("capabilities").get(set)).as(set).isEmpty();
    }
    JsonNode nofile = p.get("rlimits").get(0);
    assertThat(nofile.get("type").asText()).isEqualTo("RLIMIT_NOFILE");
    assertThat(nofile.get("soft").asInt()).isEqualTo(4096);
    assertThat(nofile.get("hard").asInt()).isEqualTo(4096);
    assertThat(p.get("noNewPrivileges").asBoolean()).isTrue();
  }

  @Test
  void configCarriesLimitsMountsAndTheCgroupParent() {
    JsonNode c =
        OciSpec.config(
            "kiln-x-1", INIT, Path.of("/w/sandboxes/kiln-x-1/rootfs"), new Limits(256L << 20, 1.5));
    assertThat(c.get("root").get("path").asText()).isEqualTo("/w/sandboxes/kiln-x-1/rootfs");
    JsonNode resources = c.get("linux").get("resources");
    assertThat(resources.get("memory").get("limit").asLong()).isEqualTo(256L << 20);
    assertThat(resources.get("cpu").get("quota").asLong()).isEqualTo(150_000);
    assertThat(resources.get("cpu").get("period").asLong()).isEqualTo(100_000);
    assertThat(c.get("linux").get("cgroupsPath").asText()).isEqualTo("kiln/kiln-x-1");
    List<String> destinations = new ArrayList<>();
    c.get("mounts").forEach(m -> destinations.add(m.get("destination").asText()));
    assertThat(destinations)
        .containsExactly("/proc", "/dev", "/dev/shm", "/sys", "/tmp", "/var/tmp", "/run/lock");
    JsonNode sys = c.get("mounts").get(3);
    assertThat(sys.get("options")).extracting(JsonNode::asText).contains("ro");
    assertThat(c.get("mounts").get(4).get("type").asText()).isEqualTo("tmpfs");
    List<String> namespaces = new ArrayList<>();
    c.get("linux").get("namespaces").forEach(n -> namespaces.add(n.get("type").asText()));
    assertThat(namespaces).contains("pid", "network", "mount");
  }

  @Test
  void scratchMountsShareTheWritableSpaceAndTheInitCarriesTheProcessLimit() {
    Limits limits = new Limits(512L << 20, 1);
    assertThat(limits.writableBytes()).isEqualTo(128L << 20);
    assertThat(limits.maxProcesses()).isEqualTo(32);
    JsonNode c = OciSpec.config("kiln-x-1", INIT, Path.of("/r"), limits);
    Map<String, List<String>> options = new HashMap<>();
    c.get("mounts")
        .forEach(
            m -> {
              List<String> o = new ArrayList<>();
              m.get("options").forEach(v -> o.add(v.asText()));
              options.put(m.get("destination").asText(), o);
            });
    assertThat(options.get("/tmp")).contains("mode=1777", "size=" + (64L << 20));
    assertThat(options.get("/dev/shm")).contains("mode=1777", "size=" + (32L << 20));
    assertThat(options.get("/var/tmp")).contains("mode=1777", "size=" + (16L << 20));
    assertThat(options.get("/run/lock")).contains("mode=1777", "size=" + (16L << 20));
    long total = 0;
    for (List<String> o : options.values()) {
      for (String opt : o) {
        if (opt.startsWith("size=")) {
          total += Long.parseLong(opt.substring(5));
        }
      }
    }
    assertThat(total).isEqualTo(limits.writableBytes());

    JsonNode nproc = c.get("process").get("rlimits").get(1);
    assertThat(nproc.get("type").asText()).isEqualTo("RLIMIT_NPROC");
    assertThat(nproc.get("soft").asInt()).isEqualTo(32);
    assertThat(nproc.get("hard").asInt()).isEqualTo(32);
    // An exec's document carries no process limit: runsc applies the init's to every process.
    assertThat(OciSpec.process(INIT).get("rlimits")).hasSize(1);
  }

  @Test
  void limitsDeriveWritableSpaceAndProcessesFromMemory() {
    assertThat(new Limits(16L << 20, 1).writableBytes()).isEqualTo(4L << 20);
    assertThat(new Limits(16L << 20, 1).maxProcesses()).isEqualTo(8);
    assertThat(new Limits(2L << 30, 2).maxProcesses()).isEqualTo(128);
    assertThat(new Limits(256L << 20, 1, 8L << 20, 20).writableBytes()).isEqualTo(8L << 20);
    assertThatThrownBy(() -> new Limits(256L << 20, 1, 256L << 20, 20))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("below the memory limit");
    assertThatThrownBy(() -> new Limits(256L << 20, 1, 8L << 20, 1))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("at least 2 processes");
  }

  @Test
  void tinyCpuSharesStillGetAQuotaTheKernelAccepts() {
    assertThat(OciSpec.cpuQuota(0.001)).isEqualTo(1000);
    assertThat(OciSpec.cpuQuota(0.25)).isEqualTo(25_000);
  }

  @Test
  void laterEnvironmentsOverrideEarlierOnesKeyByKey() {
    assertThat(
            OciSpec.mergeEnv(List.of("A=1", "B=1", "C=x=y"), List.of("B=2"), List.of("D=", "A=3")))
        .containsExactly("A=3", "B=2", "C=x=y", "D=");
    assertThatThrownBy(() -> OciSpec.mergeEnv(List.of("NOEQUALS")))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("NOEQUALS")
        .hasMessageContaining("KEY=value");
  }

  @Test
  void writesReadableJsonAtomically(@TempDir Path dir) throws Exception {
    Path file = dir.resolve("config.json");
    OciSpec.write(OciSpec.process(INIT), file);
    assertThat(OciSpec.JSON.readTree(file.toFile()).get("cwd").asText()).isEqualTo("/srv");
    try (var s = Files.list(dir)) {
      assertThat(s).containsExactly(file);
    }
  }
}
