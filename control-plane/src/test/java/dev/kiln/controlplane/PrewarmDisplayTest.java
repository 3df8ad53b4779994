package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** What {@code kiln prewarm} shows on stderr from the reports of a UDF's progress. */
class PrewarmDisplayTest {
  private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
  private final PrintStream err = new PrintStream(bytes, true, StandardCharsets.UTF_8);

  private static JsonNode report(int step, String id, String doing, long fetched) throws Exception {
    return KilnTestSupport.JSON.readTree(
        """
        {"state": "starting", "step": "%s", "step_number": %d, "steps": 5,
         "doing": "%s", "fetched_bytes": %d}
        """
            .formatted(id, step, doing, fetched));
  }

  @Test
  void linesSayEachStepOnceWithTheBytesFetched() throws Exception {
    PrewarmDisplay d = PrewarmDisplay.of(PrewarmDisplay.Mode.LINES, err);
    d.begin("udfs.sql:11", "hypot");
    d.update(report(1, "packages", "resolving packages", 0));
    d.update(report(2, "wheels", "fetching imports and wheels", 0));
    d.update(report(2, "wheels", "fetching imports and wheels", 4_000_000));
    d.update(report(3, "image", "building the image", 16_500_000));
    d.end(true);
    assertThat(bytes.toString(StandardCharsets.UTF_8).lines())
        .containsExactly(
            "kiln prewarm: udfs.sql:11 hypot: prewarming ...",
            "kiln prewarm: udfs.sql:11 hypot: step 1 of 5, resolving packages",
            "kiln prewarm: udfs.sql:11 hypot: step 2 of 5, fetching imports and wheels",
            "kiln prewarm: udfs.sql:11 hypot: step 3 of 5, building the image (16.5 MB fetched)");
  }

  /** What a bar shows of one UDF that got as far as {@code report}, then ended. */
  private String bar(String name, JsonNode report, boolean warm) {
    PrewarmDisplay d = PrewarmDisplay.of(PrewarmDisplay.Mode.BARS, err);
    d.begin("udfs.sql:1", name);
    d.update(report);
    d.end(warm);
    return bytes.toString(StandardCharsets.UTF_8);
  }

  @Test
  void aBarShowsTheUdfItsStepsAndTheBytesFetched() throws Exception {
    String shown =
        bar("hypot", report(2, "wheels", "fetching imports and wheels", 4_000_000), true);
    assertThat(shown).contains("hypot").contains("wheels 4.0 MB").contains("5/5 steps");
    assertThat(shown).contains("warm").doesNotContain("FAILED");
  }

  @Test
  void aFailedUdfsBarSaysSoWhereItStopped() throws Exception {
    String shown = bar("nope", report(1, "packages", "resolving packages", 0), false);
    assertThat(shown).contains("nope").contains("0/5 steps").contains("FAILED");
  }
}
