package dev.kiln.benchmarks;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.sun.net.httpserver.HttpServer;
import dev.kiln.controlplane.DatabendClient;
import dev.kiln.controlplane.KilnServer;
import dev.kiln.definition.DataType;
import dev.kiln.definition.QueryScripts;
import io.micrometer.core.instrument.distribution.ValueAtPercentile;
import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.arrow.memory.BufferAllocator;

/**
 * The CreateWorker part of {@link ColdStartBenchmark}: what today's Databend Query sends, a UDF
 * with one staged import whose presigned URL is new on every call (a real HTTP server on this
 * machine plays the stage, with ETags). Measures the cold CreateWorker until the first correct
 * result, the hot CreateWorker (client and inside the server), and how long after a re-upload the
 * new import is first used.
 */
final class CreateWorkerBench {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final String CODE =
      """
      import os, sys
      def stage_version(x):
          with open(os.path.join(sys._xoptions["databend_import_directory"], "v.txt")) as f:
              return f.read() + ":" + str(x)
      """;

  private CreateWorkerBench() {}

  static ObjectNode run(
      KilnServer server, DatabendClient client, BufferAllocator allocator, int hotCalls)
      throws Exception {
    AtomicReference<String> content = new AtomicReference<>("v1");
    HttpServer stage = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
    stage.createContext(
        "/v.txt",
        ex -> {
          byte[] body = content.get().getBytes(StandardCharsets.UTF_8);
          ex.getResponseHeaders().set("ETag", "\"" + content.get() + "\"");
          ex.sendResponseHeaders(200, body.length);
          try (OutputStream out = ex.getResponseBody()) {
            out.write(body);
          }
        });
    stage.start();
    AtomicInteger signature = new AtomicInteger();
    String base = "http://127.0.0.1:" + stage.getAddress().getPort() + "/v.txt?X-Amz-Signature=";
    ObjectNode report = JSON.createObjectNode();
    try {
      List<DataType> types = List.of(DataType.parse("BIGINT NULL"));
      // Cold: never-seen UDF -> first correct result.
      long t0 = System.nanoTime();
      DatabendClient.Resource r = create(client, base + signature.incrementAndGet());
      String first = call(allocator, r, types);
      report.put("cold_ms", ColdStartBenchmark.ms(System.nanoTime() - t0));
      check(first, "v1:1");
      // Hot: the same UDF, a new URL every time.
      List<Double> hot = new ArrayList<>();
      for (int i = 0; i < hotCalls; i++) {
        long h0 = System.nanoTime();
        create(client, base + signature.incrementAndGet());
        hot.add(ColdStartBenchmark.ms(System.nanoTime() - h0));
      }
      report.put("hot_calls", hot.size());
      report.put("hot_p50_ms", ColdStartBenchmark.percentile(hot, 50));
      report.put("hot_p99_ms", ColdStartBenchmark.percentile(hot, 99));
      var snapshot = server.meters().get("kiln.create_worker").timer().takeSnapshot();
      for (ValueAtPercentile v : snapshot.percentileValues()) {
        report.put(
            "hot_server_p" + Math.round(v.percentile() * 100) + "_ms",
            v.value(TimeUnit.MILLISECONDS));
      }
      // Re-upload: how long until a query sees the new file.
      content.set("v2");
      long uploaded = System.nanoTime();
      String seen = first;
      while (!seen.startsWith("v2")) {
        if (System.nanoTime() - uploaded > TimeUnit.SECONDS.toNanos(30)) {
          throw new IllegalStateException("the re-uploaded import was not used within 30 s");
        }
        seen = call(allocator, create(client, base + signature.incrementAndGet()), types);
      }
      report.put("reupload_first_used_ms", ColdStartBenchmark.ms(System.nanoTime() - uploaded));
    } finally {
      stage.stop(0);
    }
    return report;
  }

  private static DatabendClient.Resource create(DatabendClient client, String url) {
    String script =
        QueryScripts.udf(CODE, "stage_version")
            .inputs("BIGINT NULL")
            .result("VARCHAR NULL")
            .addImport("@stage/udf/v.txt", url, Map.of("host", "127.0.0.1"))
            .render();
    return client.createWorker("bench", "stage_version", script, Duration.ofSeconds(5));
  }

  private static String call(
      BufferAllocator allocator, DatabendClient.Resource r, List<DataType> types) throws Exception {
    ArrayNode rows =
        DatabendClient.call(
            allocator,
            r.endpoint(),
            r.headers(),
            "bench",
            "stage_version",
            types,
            DatabendClient.json("[[1]]"),
            Duration.ofSeconds(180));
    return rows.get(0).get(0).asText();
  }

  private static void check(String got, String want) throws IOException {
    if (!got.equals(want)) {
      throw new IOException("wrong result " + got + ", expected " + want);
    }
  }

  static void print(ObjectNode r) {
    System.out.printf(
        "CreateWorker (a UDF with one staged import, a new presigned URL per call):%n"
            + "  cold -> first correct result %.0f ms%n"
            + "  hot x%d: p50 %.3f ms, p99 %.3f ms (inside the server: p50 %.3f ms, p99 %.3f ms)%n"
            + "  a re-uploaded import was first used %.0f ms after the upload%n",
        r.get("cold_ms").asDouble(),
        r.get("hot_calls").asInt(),
        r.get("hot_p50_ms").asDouble(),
        r.get("hot_p99_ms").asDouble(),
        r.path("hot_server_p50_ms").asDouble(),
        r.path("hot_server_p99_ms").asDouble(),
        r.get("reupload_first_used_ms").asDouble());
  }
}
