package dev.kiln.resolver;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;

class VersionTest {
  static Version v(String s) throws KilnException {
    return Version.parse(s);
  }

  @Test
  void normalisesAlternativeSpellings() throws Exception {
    assertThat(v("1.0-ALPHA.1")).hasToString("1.0a1");
    assertThat(v("v2.0")).hasToString("2.0");
    assertThat(v("1.0c1")).hasToString("1.0rc1");
    assertThat(v("1.0-preview2")).hasToString("1.0rc2");
    assertThat(v("1.0beta")).hasToString("1.0b0");
    assertThat(v("1.0-1")).hasToString("1.0.post1");
    assertThat(v("1.0.rev3")).hasToString("1.0.post3");
    assertThat(v("1.0-r")).hasToString("1.0.post0");
    assertThat(v("1.0.DEV")).hasToString("1.0.dev0");
    assertThat(v("1.0+Ubuntu-01_x")).hasToString("1.0+ubuntu.1.x");
    assertThat(v("1!2.0.post0.dev1")).hasToString("1!2.0.post0.dev1");
    assertThat(v(" 2.9.0.post0 ")).hasToString("2.9.0.post0");
  }

  @Test
  void ordersAsPep440Says() throws Exception {
    List<String> ordered =
        List.of(
            "1.0.dev456",
            "1.0a1",
            "1.0a2.dev456",
            "1.0a12.dev456",
            "1.0a12",
            "1.0b1.dev456",
            "1.0b2",
            "1.0b2.post345.dev456",
            "1.0b2.post345",
            "1.0rc1.dev456",
            "1.0rc1",
            "1.0",
            "1.0+abc.5",
            "1.0+abc.7",
            "1.0+5",
            "1.0.post456.dev34",
            "1.0.post456",
            "1.0.15",
            "1.1.dev1",
            "2.0",
            "1!0.1");
    List<Version> parsed = new ArrayList<>();
    for (String s : ordered) {
      parsed.add(v(s));
    }
    List<Version> shuffled = new ArrayList<>(parsed);
    Collections.shuffle(shuffled, new java.util.Random(7));
    Collections.sort(shuffled);
    assertThat(shuffled).containsExactlyElementsOf(parsed);
  }

  @Test
  void trailingZerosDoNotMatterForEquality() throws Exception {
    assertThat(v("1.0")).isEqualTo(v("1.0.0")).isEqualTo(v("1"));
    assertThat(v("1.0").hashCode()).isEqualTo(v("1.0.0").hashCode());
    assertThat(v("1.0")).isNotEqualTo(v("1.0.post0"));
    assertThat(v("1.0+1")).isEqualTo(v("1.0+01"));
  }

  @Test
  void classifiesReleases() throws Exception {
    assertThat(v("1.0a1").isPrerelease()).isTrue();
    assertThat(v("1.0.dev1").isPrerelease()).isTrue();
    assertThat(v("1.0.post1").isPrerelease()).isFalse();
    assertThat(v("1.0.post1").isPostRelease()).isTrue();
    assertThat(v("1!1.0rc1.post2+x").baseVersion()).hasToString("1!1.0");
    assertThat(v("1.0+x").publicVersion()).hasToString("1.0");
  }

  @Test
  void rejectsNonVersionsNamingThem() {
    assertThatThrownBy(() -> v("1.0-foo")).hasMessageContaining("'1.0-foo' is not a valid version");
    assertThatThrownBy(() -> v("")).isInstanceOf(KilnException.class);
    assertThat(Version.tryParse("latest")).isNull();
    assertThat(Version.tryParse("99999999999999999999999")).isNull();
  }
}
