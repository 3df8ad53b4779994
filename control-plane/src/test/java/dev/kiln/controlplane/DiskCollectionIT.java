package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.image.BuildImage;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.FileTime;
import java.time.Instant;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code kiln cache gc} with real images and sandboxes: a stopped UDF's image, blobs and extracted
 * layers go once unused for --gc-after (the files' own times stand for the clock: the test ages
 * them), a running UDF's stay whole, a dry run only counts, and the collected UDF is built again on
 * its next call.
 */
class DiskCollectionIT {
  @TempDir Path dir;
  @RegisterExtension final TestAllocator allocator = new TestAllocator();

  private Object call(DatabendClient.Resource r, String handler) throws Exception {
    return KilnTestSupport.call(allocator, r, "acme", handler, List.of("BIGINT NULL"), "[[1]]")
        .get(0)
        .get(0);
  }

  /** Every file under the data directory looks last written two days ago. */
  private static void ageEverything(Path data) throws Exception {
    FileTime old = FileTime.from(Instant.now().minusSeconds(2 * 86400));
    // Sandboxes (a probe's, say) may come and go while the tree is walked: what goes away meanwhile
    // is passed over (Files.walk would fail on a directory removed between listing and reading).
    Files.walkFileTree(
        data,
        new SimpleFileVisitor<>() {
          @Override
          public FileVisitResult preVisitDirectory(Path d, BasicFileAttributes attrs) {
            if (d.toString().contains("/rootfs")) {
              return FileVisitResult.SKIP_SUBTREE;
            }
            age(d);
            return FileVisitResult.CONTINUE;
          }

          @Override
          public FileVisitResult visitFile(Path f, BasicFileAttributes attrs) {
            if (!f.toString().contains("/rootfs")) {
              age(f);
            }
            return FileVisitResult.CONTINUE;
          }

          @Override
          public FileVisitResult visitFileFailed(Path f, java.io.IOException e) {
            return FileVisitResult.CONTINUE;
          }

          private void age(Path p) {
            try {
              Files.setLastModifiedTime(p, old);
            } catch (java.io.IOException e) {
              // a file going away meanwhile
            }
          }
        });
  }

  @Test
  void aStoppedUdfsFilesGoARunningOnesStayAndTheCollectedOneComesBack() throws Exception {
    try (RunningKiln kiln = RunningKiln.start(dir.resolve("data"))) {
      DatabendClient.Resource one = kiln.api().apply("acme", KilnTestSupport.plus(1));
      DatabendClient.Resource two = kiln.api().apply("acme", KilnTestSupport.plus(2));
      assertThat(call(one, "plus1")).isEqualTo(2L);
      assertThat(call(two, "plus2")).isEqualTo(3L);
      UdfResource stopped =
          kiln.server().registryForTests().all().stream()
              .filter(r -> r.definition.handler().equals("plus1"))
              .findFirst()
              .orElseThrow();
      UdfResource running =
          kiln.server().registryForTests().all().stream()
              .filter(r -> r.definition.handler().equals("plus2"))
              .findFirst()
              .orElseThrow();
      String stoppedImage =
          BuildImage.imageName(stopped.provisioned().orElseThrow().image().join().key());
      String runningImage =
          BuildImage.imageName(running.provisioned().orElseThrow().image().join().key());
      kiln.server().registryForTests().evict(stopped); // as an idle stop would
      ageEverything(kiln.dataDir());
      String admin = "http://127.0.0.1:" + kiln.server().adminPort();

      JsonNode dry =
          KilnTestSupport.JSON.readTree(
              KilnTestSupport.cli("cache", "gc", "--dry-run", "--json", "--admin", admin));
      assertThat(dry.path("images")).extracting(JsonNode::asText).containsExactly(stoppedImage);
      assertThat(dry.path("extractedLayers").asInt()).as("its code layer").isPositive();

      JsonNode done =
          KilnTestSupport.JSON.readTree(
              KilnTestSupport.cli("cache", "gc", "--json", "--admin", admin));
      assertThat(done.path("images")).extracting(JsonNode::asText).containsExactly(stoppedImage);
      assertThat(done.path("extractedLayers").asInt())
          .isEqualTo(dry.path("extractedLayers").asInt());
      assertThat(done.path("diskBytesAfter").asLong())
          .isLessThan(done.path("diskBytesBefore").asLong());
      assertThat(KilnTestSupport.cli("cache", "gc", "--admin", admin))
          .as("nothing left to collect")
          .startsWith("removed 0 unused image(s)");

      assertThat(call(two, "plus2")).as("the running UDF is untouched").isEqualTo(3L);
      assertThat(
              kiln.server().registryForTests().all().stream()
                  .map(
                      r ->
                          BuildImage.imageName(r.provisioned().orElseThrow().image().join().key())))
          .contains(runningImage);
      assertThat(call(one, "plus1")).as("built again on its next call").isEqualTo(2L);
    }
  }
}
