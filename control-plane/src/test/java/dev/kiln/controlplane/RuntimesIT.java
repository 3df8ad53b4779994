package dev.kiln.controlplane;

import static dev.kiln.controlplane.KilnTestSupport.assertFailsWithStatus;
import static dev.kiln.controlplane.KilnTestSupport.spec;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.node.ObjectNode;
import io.grpc.Status;
import java.nio.file.Path;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** {@code --runtime X.Y=IMAGE}: a spec's runtime_version picks the base image it runs on. */
class RuntimesIT {
  @TempDir Path dataDir;

  @Test
  void mappedVersionsRunOnTheirBaseAndOthersAreRejectedWithTheList() throws Exception {
    KilnConfig config =
        KilnTestSupport.testConfig(dataDir).runtime("3.11", KilnTestSupport.baseImage()).build();
    try (KilnServer server = KilnServer.start(config);
        DatabendClient api = KilnTestSupport.client(server);
        BufferAllocator allocator = new RootAllocator()) {
      String code = "import sys\ndef ver(x):\n    return '%d.%d' % sys.version_info[:2]\n";
      ObjectNode s =
          (ObjectNode) KilnTestSupport.JSON.readTree(spec("ver", List.of("INT"), "VARCHAR", code));
      s.put("runtime_version", "3.11.4");
      DatabendClient.Resource r = api.apply("t", s.toString());
      assertThat(KilnTestSupport.call(allocator, r, "t", "ver", List.of("INT"), "[[1]]"))
          .isEqualTo(List.of(List.of("3.11")));

      s.put("runtime_version", "3.12.2");
      assertFailsWithStatus(
          () -> api.apply("t", s.toString()),
          Status.Code.INVALID_ARGUMENT,
          "runtime_version",
          "Python 3.12 has no base image",
          "configured: 3.11");
    }
  }
}
