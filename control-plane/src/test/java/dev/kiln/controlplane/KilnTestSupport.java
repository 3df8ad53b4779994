package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.definition.DataType;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.apache.arrow.flight.FlightCallHeaders;
import org.apache.arrow.flight.HeaderCallOption;
import org.apache.arrow.memory.BufferAllocator;
import org.assertj.core.api.ThrowableAssert.ThrowingCallable;

/** Shared plumbing for tests that talk to a real Kiln server like Databend does. */
final class KilnTestSupport {

  /** Runs a {@code kiln} CLI command in this JVM and returns what it printed on stdout. */
  static String cli(String... args) {
    java.io.PrintStream saved = System.out;
    java.io.ByteArrayOutputStream bytes = new java.io.ByteArrayOutputStream();
    System.setOut(new java.io.PrintStream(bytes, true, java.nio.charset.StandardCharsets.UTF_8));
    try {
      int code = new picocli.CommandLine(new Kiln()).execute(args);
      assertThat(code).as("exit status of kiln %s", String.join(" ", args)).isZero();
    } finally {
      System.setOut(saved);
    }
    return bytes.toString(java.nio.charset.StandardCharsets.UTF_8);
  }

  /** Polls {@code condition} until it holds, failing after {@code within}; no fixed sleeps. */
  static void eventually(
      String what, Duration within, java.util.function.BooleanSupplier condition) {
    long deadline = System.nanoTime() + within.toNanos();
    while (!condition.getAsBoolean()) {
      assertThat(System.nanoTime() - deadline).as("%s within %s", what, within).isNegative();
      java.util.concurrent.locks.LockSupport.parkNanos(5_000_000);
    }
  }

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

  static KilnConfigBuilder testConfig(Path dataDir) {
    return KilnConfig.builder()
        .grpcPort(0)
        .flightPort(0)
        .adminPort(0)
        .bindHost("127.0.0.1")
        .dataDir(dataDir)
        .baseImage(baseImage())
        // The cold path; WarmPoolIT covers the pool.
        .set("warm-pool", "0")
        .set("zygotes", "0");
  }

  /**
   * The code of {@code look()}: everything a UDF can see from inside its sandbox, one item per line
   * — files under /kiln and /tmp with their contents ({@code PATH:CONTENT}), its variables ({@code
   * ENV:...}) and the command line of every process ({@code PROC:...}); {@code preamble} runs at
   * import, {@code first} (a Python expression, or empty) is the first item.
   */
  static String lookAround(String preamble, String first) {
    return "import os\n"
        + preamble
        + "def look():\n"
        + "    seen = ["
        + first
        + "]\n"
        + "    for top in ('/kiln', '/tmp'):\n"
        + "        for d, _, names in os.walk(top):\n"
        + "            for n in names:\n"
        + "                p = os.path.join(d, n)\n"
        + "                with open(p, 'rb') as f:\n"
        + "                    seen.append(p + ':' + f.read().decode('latin-1'))\n"
        + "    seen.append('ENV:' + repr(sorted(os.environ.items())))\n"
        + "    for pid in os.listdir('/proc'):\n"
        + "        if pid.isdigit():\n"
        + "            try:\n"
        + "                with open('/proc/%s/cmdline' % pid, 'rb') as f:\n"
        + "                    seen.append('PROC:' + f.read().decode('latin-1'))\n"
        + "            except OSError:\n"
        + "                pass\n"
        + "    return '\\n'.join(seen)\n";
  }

  /** What {@code look()} (of {@link #lookAround}) of {@code tenant} saw. */
  static String look(BufferAllocator allocator, DatabendClient.Resource r, String tenant)
      throws Exception {
    return (String) call(allocator, r, tenant, "look", List.of(), "[[]]").get(0).get(0);
  }

  /** The spec of {@code plusN(x) = x + N}, one BIGINT NULL argument: a distinct UDF per N. */
  static String plus(int n) {
    return spec(
        "plus" + n,
        List.of("BIGINT NULL"),
        "BIGINT NULL",
        "def plus" + n + "(x):\n    return x + " + n + "\n");
  }

  /** A spec as Databend writes it (compact JSON, keys in Databend's order). */
  static String spec(String handler, List<String> inputTypes, String resultType, String code) {
    return spec(handler, inputTypes, resultType, List.of(), List.of(), code);
  }

  /** A spec as Databend writes it, with its import locations and {@code packages}. */
  static String spec(
      String handler,
      List<String> inputTypes,
      String resultType,
      List<String> imports,
      List<String> packages,
      String code) {
    ObjectNode n = JSON.createObjectNode();
    n.put("version", 1);
    n.put("kind", "udf");
    n.put("language", "python");
    n.put("handler", handler);
    ArrayNode in = n.putArray("input_types");
    inputTypes.forEach(in::add);
    n.put("result_type", resultType);
    ArrayNode i = n.putArray("imports");
    imports.forEach(i::add);
    ArrayNode p = n.putArray("packages");
    packages.forEach(p::add);
    n.put("runtime_version", "3.12.2");
    n.put("code", code);
    return n.toString();
  }

  /** A Databend-like client of a test server. */
  static DatabendClient client(KilnServer server) {
    return client(server.grpcPort());
  }

  /** A Databend-like client of the server listening on {@code grpcPort} on this machine. */
  static DatabendClient client(int grpcPort) {
    return new DatabendClient("127.0.0.1:" + grpcPort);
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

  /** The headers Databend sends with a DoExchange of {@code handler}, the resource's included. */
  static HeaderCallOption databendHeaders(
      DatabendClient.Resource resource, String tenant, String handler, String queryId) {
    FlightCallHeaders headers = new FlightCallHeaders();
    headers.insert("x-databend-tenant", tenant);
    headers.insert("x-databend-function", handler);
    headers.insert("x-databend-query-id", queryId);
    resource.headers().forEach(headers::insert);
    return new HeaderCallOption(headers);
  }

  /** Result rows of one column each, as {@link #call} returns them. */
  static List<List<Object>> rows(Object... values) {
    return Arrays.stream(values).map(v -> Arrays.asList(v)).toList();
  }

  /**
   * Asserts that {@code call} (an ApplyUdfResource) fails with gRPC status {@code code} and a
   * description that contains each of {@code description}.
   */
  static void assertFailsWithStatus(
      ThrowingCallable call, Status.Code code, String... description) {
    assertThatThrownBy(call)
        .isInstanceOfSatisfying(
            StatusRuntimeException.class,
            e -> {
              assertThat(e.getStatus().getCode()).isEqualTo(code);
              assertThat(e.getStatus().getDescription()).contains(description);
            });
  }

  /** Fails when a server on {@code dataDir} left a sandbox running or something mounted. */
  static void assertNothingLeftBehind(Path dataDir) throws IOException, InterruptedException {
    assertThat(runscContainers(dataDir)).as("sandboxes left running").isEmpty();
    assertThat(mountsUnder(dataDir)).as("mounts left behind").isEmpty();
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
