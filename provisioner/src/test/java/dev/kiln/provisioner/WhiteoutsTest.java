package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WhiteoutsTest {
  @TempDir Path dir;

  @Test
  void paxRecordLengthsCountThemselves() {
    assertThat(new String(Whiteouts.paxRecord("path", "a"), StandardCharsets.UTF_8))
        .isEqualTo("9 path=a\n");
    // 10 bytes of body + 2 digits of length would be 12: the length field grows with itself.
    String r = new String(Whiteouts.paxRecord("path", "abcd"), StandardCharsets.UTF_8);
    assertThat(r).isEqualTo("13 path=abcd\n");
    assertThat(r.getBytes(StandardCharsets.UTF_8)).hasSize(13);
    String unicode =
        new String(Whiteouts.paxRecord("path", "é".repeat(50)), StandardCharsets.UTF_8);
    assertThat(unicode.getBytes(StandardCharsets.UTF_8).length)
        .isEqualTo(Integer.parseInt(unicode.substring(0, unicode.indexOf(' '))));
  }

  @Test
  void collectRemovesWhiteoutFilesAndRemembersTheirMeaning() throws Exception {
    Files.createDirectories(dir.resolve("etc/app"));
    Files.createFile(dir.resolve("etc/.wh.passwd"));
    Files.createFile(dir.resolve("etc/app/.wh..wh..opq"));
    Files.writeString(dir.resolve("etc/app/kept"), "x");
    // A whiteout next to a file of the same name in the same layer: the file wins.
    Files.createFile(dir.resolve("etc/.wh.hosts"));
    Files.writeString(dir.resolve("etc/hosts"), "127.0.0.1 localhost\n");
    Files.createFile(dir.resolve(".wh..wh..opq"));

    Whiteouts.Markers m = Whiteouts.collect(dir);

    assertThat(m.deleted()).containsExactly("etc/passwd");
    assertThat(m.opaqueDirs()).containsExactlyInAnyOrder(".", "etc/app");
    try (var s = Files.walk(dir)) {
      assertThat(s.map(p -> p.getFileName().toString())).noneMatch(n -> n.startsWith(".wh."));
    }
    assertThat(dir.resolve("etc/hosts")).exists();
  }

  @Test
  void theMarkerArchiveIsATarThatGnuTarReads() throws Exception {
    Files.createDirectories(dir.resolve("opt/app"));
    String longName = "d/".repeat(60) + "file";
    byte[] archive =
        Whiteouts.markerArchive(
            dir, new Whiteouts.Markers(List.of("etc/gone", longName), List.of("opt/app")));
    assertThat(archive.length % 512).isZero();
    HostCommand r =
        HostCommand.run(
            List.of("tar", "-tv", "--numeric-owner", "-f", "-"),
            null,
            archive,
            Duration.ofSeconds(30));
    assertThat(r.exitCode()).as(r.stderr()).isZero();
    List<String> lines = r.stdout().lines().toList();
    assertThat(lines).hasSize(3);
    assertThat(lines.get(0)).startsWith("c---------").contains(" 0,0 ").endsWith("etc/gone");
    assertThat(lines.get(1)).startsWith("c---------").endsWith(longName);
    assertThat(lines.get(2)).startsWith("d").endsWith("opt/app");
  }
}
