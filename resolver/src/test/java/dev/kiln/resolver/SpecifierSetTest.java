package dev.kiln.resolver;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.KilnException;
import org.junit.jupiter.api.Test;

class SpecifierSetTest {
  static boolean in(String version, String spec) throws KilnException {
    return SpecifierSet.parse(spec).contains(Version.parse(version), false);
  }

  static boolean inPre(String version, String spec) throws KilnException {
    return SpecifierSet.parse(spec).contains(Version.parse(version), true);
  }

  @Test
  void comparisonOperators() throws Exception {
    assertThat(in("1.5", ">=1.2,<2")).isTrue();
    assertThat(in("2.0", ">=1.2,<2")).isFalse();
    assertThat(in("1.2", ">1.2")).isFalse();
    assertThat(in("1.2.1", ">1.2")).isTrue();
    assertThat(in("1.2", "<=1.2.0")).isTrue();
    assertThat(in("1.3", "!=1.3")).isFalse();
    assertThat(in("1.3.1", "!=1.3")).isTrue();
    assertThat(in("7.0", "")).isTrue();
  }

  @Test
  void compatibleRelease() throws Exception {
    assertThat(in("2.2", "~=2.2")).isTrue();
    assertThat(in("2.9", "~=2.2")).isTrue();
    assertThat(in("3.0", "~=2.2")).isFalse();
    assertThat(in("1.4.9", "~=1.4.5")).isTrue();
    assertThat(in("1.5.0", "~=1.4.5")).isFalse();
    assertThat(in("1.4.4", "~=1.4.5")).isFalse();
    assertThatThrownBy(() -> SpecifierSet.parse("~=1"))
        .hasMessageContaining("two release segments");
  }

  @Test
  void prefixMatching() throws Exception {
    assertThat(in("1.1.7", "==1.1.*")).isTrue();
    assertThat(in("1.10", "==1.1.*")).isFalse();
    assertThat(in("1", "==1.0.*")).isTrue();
    assertThat(in("1.1.post1", "==1.1.*")).isTrue();
    assertThat(in("1.1.7", "!=1.1.*")).isFalse();
    assertThat(in("1.1+local", "==1.1.*")).isTrue();
    assertThatThrownBy(() -> SpecifierSet.parse(">=1.*"))
        .hasMessageContaining("only allowed with == and !=");
  }

  @Test
  void localVersions() throws Exception {
    assertThat(in("1.0+cpu", "==1.0")).isTrue();
    assertThat(in("1.0+cpu", "==1.0+cpu")).isTrue();
    assertThat(in("1.0+gpu", "==1.0+cpu")).isFalse();
    assertThat(in("1.0+cpu", ">1.0")).isFalse();
    assertThat(in("1.0+cpu", "<=1.0")).isTrue();
    assertThatThrownBy(() -> SpecifierSet.parse(">=1.0+cpu")).hasMessageContaining("local version");
  }

  @Test
  void exclusiveOrderedComparisonsFollowPep440() throws Exception {
    // <3.1 does not admit pre-releases of 3.1; >3.1 does not admit its post-releases.
    assertThat(inPre("3.1a1", "<3.1")).isFalse();
    assertThat(inPre("3.0a1", "<3.1")).isTrue();
    assertThat(inPre("3.1a1", "<3.1b1")).isTrue();
    assertThat(in("3.1.post1", ">3.1")).isFalse();
    assertThat(in("3.1.post2", ">3.1.post1")).isTrue();
    assertThat(in("3.2", ">3.1")).isTrue();
  }

  @Test
  void preReleasesOnlyWhenAllowedOrNamed() throws Exception {
    assertThat(in("2.0b1", ">=1.0")).isFalse();
    assertThat(inPre("2.0b1", ">=1.0")).isTrue();
    assertThat(in("2.0b2", ">=2.0b1")).isTrue();
    assertThat(in("2.0.dev1", "==2.0.dev1")).isTrue();
    assertThat(in("2.0b2", "!=2.0b1")).isFalse();
  }

  @Test
  void arbitraryEquality() throws Exception {
    assertThat(in("1.0", "===1.0")).isTrue();
    assertThat(in("1.0.0", "===1.0")).isFalse();
    assertThat(SpecifierSet.parse("===foobar").exactPin()).isEmpty();
  }

  @Test
  void canonicalFormIsSortedAndNormalised() throws Exception {
    assertThat(SpecifierSet.parse(" < 2 , >= 1.0-ALPHA ").toString()).isEqualTo("<2,>=1a0");
    assertThat(SpecifierSet.parse("==1.2.*")).hasToString("==1.2.*");
    assertThat(SpecifierSet.parse("==4.9.0").exactPin()).contains(Version.parse("4.9"));
    assertThat(SpecifierSet.parse(">=4.9.0").exactPin()).isEmpty();
  }

  @Test
  void rejectsBadClausesNamingThem() {
    assertThatThrownBy(() -> SpecifierSet.parse(">=1.0,,<2")).hasMessageContaining("empty clause");
    assertThatThrownBy(() -> SpecifierSet.parse("=>1.0"))
        .hasMessageContaining("'=>1.0' is not a version clause");
    assertThatThrownBy(() -> SpecifierSet.parse("==one"))
        .hasMessageContaining("'one' is not a valid version");
  }
}
