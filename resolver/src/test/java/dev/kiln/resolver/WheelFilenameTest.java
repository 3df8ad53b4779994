package dev.kiln.resolver;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import org.junit.jupiter.api.Test;

class WheelFilenameTest {

  @Test
  void partsOfAWheelNameWithABuildTagAndCompressedTags() throws Exception {
    WheelFilename w = WheelFilename.of("Mixed.Case_Name-2.0.1-3b-py2.py3-none-any.whl");
    assertThat(w.filename()).isEqualTo("Mixed.Case_Name-2.0.1-3b-py2.py3-none-any.whl");
    assertThat(w.distribution()).isEqualTo("Mixed.Case_Name");
    assertThat(w.name()).isEqualTo("mixed-case-name");
    assertThat(w.version()).isEqualTo(Version.parse("2.0.1"));
    assertThat(w.build()).isEqualTo("3b");
    assertThat(w.buildNumber()).isEqualTo(3);
    assertThat(w.tags()).containsExactly("py2-none-any", "py3-none-any");
    assertThat(WheelFilename.parse(w.filename())).isEqualTo(w);

    WheelFilename plain = WheelFilename.parse("numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl");
    assertThat(plain.build()).isEmpty();
    assertThat(plain.buildNumber()).isZero();
    assertThat(plain.tags()).containsExactly("cp311-cp311-manylinux_2_17_x86_64");
  }

  @Test
  void namesThatAreNotWheelsAreSkippedByParseAndExplainedByOf() {
    String[][] cases = {
      {"changed-1.0.tar.gz", "'changed-1.0.tar.gz' is not a wheel file name; expected"},
      {"dir/six-1.17.0-py3-none-any.whl", "is not a wheel file name"},
      {"changed-py3-none-any.whl", "has 4 dash-separated parts, expected 5 or 6"},
      {"a-1.0-1-2-py3-none-any.whl", "has 7 dash-separated parts"},
      {"a-1.0-py3-none-any-.whl", "has an empty part"},
      {"a-not.a.version!-py3-none-any.whl", "has version 'not.a.version!'"},
      {"a-1.0-x1-py3-none-any.whl", "has build tag 'x1', which does not start with a digit"},
    };
    for (String[] c : cases) {
      assertThat(WheelFilename.parse(c[0])).as(c[0]).isNull();
      assertThatThrownBy(() -> WheelFilename.of(c[0]))
          .as(c[0])
          .isInstanceOfSatisfying(
              KilnException.class,
              e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGES_UNRESOLVABLE))
          .hasMessageContaining(c[0])
          .hasMessageContaining(c[1]);
    }
    assertThat(WheelFilename.parse(null)).isNull();
  }

  @Test
  void sdistVersionsKeepDashesInTheName() throws Exception {
    assertThat(WheelFilename.sdistVersion("python-dateutil", "python-dateutil-2.8.2.tar.gz"))
        .isEqualTo(Version.parse("2.8.2"));
    assertThat(WheelFilename.sdistVersion("six", "six-1.17.0-py3-none-any.whl")).isNull();
  }
}
