package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.resolver.DataType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.apache.arrow.memory.BufferAllocator;

/** Shared plumbing for tests that talk to a real Kiln server like Databend does. */
final class KilnTestSupport {
  static final ObjectMapper JSON = new ObjectMapper();

  private KilnTestSupport() {}

  /** The base image archive tests use; fails with instructions when it is missing. */
  static String baseImage() {
    String configured = System.getenv("KILN_BASE_IMAGE");
    String path =
        configured != null && !configured.isEmpty() ? configured : KilnConfig.defaultBaseImage();
    if (!Files.isRegularFile(Path.of(path))) {
      throw new IllegalStateException(
          "base image archive " + path + " is missing; run bin/build-base-image (bin/test does)");
    }
    return path;
  }

  static KilnConfig.Builder testConfig(Path dataDir) {
    return KilnConfig.builder()
        .grpcPort(0)
        .flightPort(0)
        .adminPort(0)
        .bindHost("127.0.0.1")
        .dataDir(dataDir)
        .baseImage(baseImage());
  }

  /** A spec as Databend writes it (compact JSON, keys in Databend's order). */
  static String spec(String handler, List<String> inputTypes, String resultType, String code) {
    ObjectNode n = JSON.createObjectNode();
    n.put("version", 1);
    n.put("kind", "udf");
    n.put("language", "python");
    n.put("handler", handler);
    ArrayNode in = n.putArray("input_types");
    inputTypes.forEach(in::add);
    n.put("result_type", resultType);
    n.putArray("imports");
    n.putArray("packages");
    n.put("runtime_version", "3.12.2");
    n.put("code", code);
    return n.toString();
  }

  /** A Databend-like client of a test server. */
  static DatabendClient client(KilnServer server) {
    return new DatabendClient("127.0.0.1:" + server.grpcPort());
  }

  /** Calls a UDF as Databend does and returns the result rows as plain Java values. */
  static List<List<Object>> call(
      BufferAllocator allocator,
      DatabendClient.Resource resource,
      String tenant,
      String handler,
      List<String> inputTypes,
      String rowsJson)
      throws Exception {
    List<DataType> types = new ArrayList<>();
    for (String t : inputTypes) {
      types.add(DataType.parse(t));
    }
    ArrayNode rows =
        DatabendClient.call(
            allocator,
            resource.endpoint(),
            resource.headers(),
            tenant,
            handler,
            types,
            JSON.readTree(rowsJson),
            Duration.ofSeconds(180));
    List<List<Object>> out = new ArrayList<>();
    for (var row : rows) {
      List<Object> r = new ArrayList<>();
      r.add(JSON.treeToValue(row.get(0), Object.class));
      out.add(r);
    }
    return out;
  }

  /** Containers runsc still knows under the server's data directory. */
  static List<String> runscContainers(Path dataDir) throws IOException, InterruptedException {
    Path root = dataDir.resolve("provisioner").resolve("runsc");
    if (!Files.isDirectory(root)) {
      return List.of();
    }
    Process p =
        new ProcessBuilder("runsc", "--root", root.toString(), "list", "-quiet")
            .redirectErrorStream(true)
            .start();
    String out = new String(p.getInputStream().readAllBytes()).trim();
    p.waitFor();
    return out.isEmpty() ? List.of() : List.of(out.split("\\s+"));
  }

  /** Mount points under a directory, from /proc/self/mountinfo. */
  static List<String> mountsUnder(Path dir) throws IOException {
    String prefix = dir.toAbsolutePath().toString();
    List<String> mounts = new ArrayList<>();
    for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
      String[] f = line.split(" ");
      if (f.length > 4 && f[4].startsWith(prefix)) {
        mounts.add(f[4]);
      }
    }
    return mounts;
  }
}
