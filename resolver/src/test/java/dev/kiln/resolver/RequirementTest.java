package dev.kiln.resolver;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.KilnException;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.Test;

class RequirementTest {
  static final Map<String, String> PY311 = Targets.defaultBase().markerEnvironment();
  static final Map<String, String> PY312 = Targets.python312().markerEnvironment();

  @Test
  void parsesNameExtrasSpecifierAndMarker() throws Exception {
    Requirement r =
        Requirement.parse("Pandas_Stubs[Performance, excel] >= 2.1 , <3 ; python_version>='3.10'");
    assertThat(r.name()).isEqualTo("pandas-stubs");
    assertThat(r.extras()).containsExactly("excel", "performance");
    assertThat(r.specifier()).isEqualTo("<3,>=2.1");
    assertThat(r.marker()).contains("python_version >= \"3.10\"");
    assertThat(r.canonical())
        .isEqualTo("pandas-stubs[excel,performance]<3,>=2.1; python_version >= \"3.10\"");
    assertThat(Requirement.parse("numpy").specifier()).isEmpty();
    assertThat(Requirement.parse("humanize==4.9.0").specifier()).isEqualTo("==4.9");
    assertThat(Requirement.parse("humanize~=4.9.0").specifier()).isEqualTo("~=4.9.0");
    assertThat(Requirement.parse("humanize==4.0.*").specifier()).isEqualTo("==4.0.*");
    assertThat(Requirement.parse("zope.interface (>=5)").specifier()).isEqualTo(">=5");
    assertThat(Requirement.parse("a.b_c-D").name()).isEqualTo("a-b-c-d");
    assertThat(Requirement.parse("x[]").extras()).isEmpty();
  }

  @Test
  void equivalentSpellingsHaveOneCanonicalForm() throws Exception {
    assertThat(Requirement.parse("NumPy >=1.0,<2").canonical())
        .isEqualTo(Requirement.parse("numpy<2 ,>= 1.0.0").canonical())
        .isEqualTo("numpy<2,>=1");
    assertThat(Requirement.parse("six;python_version<'3'").canonical())
        .isEqualTo(Requirement.parse("six ; python_version < \"3\"").canonical());
  }

  @Test
  void refusesDirectUrlsAndFiles() {
    assertThatThrownBy(() -> Requirement.parse("pkg @ https://example.com/pkg-1.0.whl"))
        .isInstanceOf(KilnException.class)
        .hasMessageContaining("invalid requirement 'pkg @ https://example.com/pkg-1.0.whl'")
        .hasMessageContaining("direct URL requirements are not supported");
    assertThatThrownBy(() -> Requirement.parse("https://example.com/pkg-1.0.whl"))
        .hasMessageContaining("direct URL and file requirements are not supported");
    assertThatThrownBy(() -> Requirement.parse("./dist/pkg-1.0.tar.gz"))
        .hasMessageContaining("not supported");
  }

  @Test
  void badStringsNameTheStringAndTheProblem() {
    assertThatThrownBy(() -> Requirement.parse("numpy>=>1"))
        .hasMessageContaining("invalid requirement 'numpy>=>1'")
        .hasMessageContaining("not a valid version");
    assertThatThrownBy(() -> Requirement.parse("numpy 1.2"))
        .hasMessageContaining("unexpected '1.2' after the package name");
    assertThatThrownBy(() -> Requirement.parse("-numpy"))
        .hasMessageContaining("expected a package name");
    assertThatThrownBy(() -> Requirement.parse("numpy[fast")).hasMessageContaining("closing ']'");
    assertThatThrownBy(() -> Requirement.parse("numpy; python_verison > '3'"))
        .hasMessageContaining("unknown marker variable 'python_verison'");
    assertThatThrownBy(() -> Requirement.parse("numpy; python_version > '3' and"))
        .hasMessageContaining("invalid marker");
    assertThatThrownBy(() -> Requirement.parse("numpy;"))
        .hasMessageContaining("nothing follows ';'");
    assertThatThrownBy(() -> Requirement.parse("  ")).hasMessageContaining("empty");
  }

  @Test
  void pythonVersionMarkersCompareAsVersions() throws Exception {
    // As strings "3.11" < "3.9"; PEP 508 compares them as versions.
    assertThat(applies("x; python_version >= '3.9'", PY311)).isTrue();
    assertThat(applies("x; python_version < '3.9'", PY311)).isFalse();
    assertThat(applies("x; python_version == '3.11'", PY311)).isTrue();
    assertThat(applies("x; python_version == '3.11.*'", PY311)).isTrue();
    assertThat(applies("x; python_full_version >= '3.11.3'", PY311)).isFalse();
    assertThat(applies("x; python_full_version >= '3.11.3'", PY312)).isTrue();
    assertThat(applies("x; python_version ~= '3.10'", PY311)).isTrue();
    assertThat(applies("x; '3.12' <= python_version", PY311)).isFalse();
    assertThat(applies("x; python_version not in '3.10, 3.11'", PY311)).isFalse();
  }

  @Test
  void platformMarkersAndBooleanLogic() throws Exception {
    assertThat(applies("x; sys_platform == 'win32'", PY311)).isFalse();
    assertThat(applies("x; sys_platform == 'win32' or sys_platform == 'linux'", PY311)).isTrue();
    assertThat(applies("x; platform_machine == 'x86_64' and os_name == 'posix'", PY311)).isTrue();
    assertThat(
            applies(
                "x; (sys_platform == 'darwin' or platform_machine == 'aarch64') and"
                    + " python_version >= '3'",
                Targets.aarch64().markerEnvironment()))
        .isTrue();
    assertThat(applies("x; platform_python_implementation == 'CPython'", PY311)).isTrue();
    assertThat(applies("x; implementation_name == 'pypy'", PY311)).isFalse();
    assertThat(applies("x; platform_system != 'Windows'", PY311)).isTrue();
    assertThat(applies("x; 'linux' in sys_platform", PY311)).isTrue();
    assertThat(applies("x; os.name == 'posix'", PY311)).isTrue(); // legacy dotted name
  }

  @Test
  void extraMarkersHoldOnlyForActiveExtras() throws Exception {
    Requirement r = Requirement.parse("pytest; extra == 'Test_Suite'");
    assertThat(r.appliesTo(PY311, Set.of())).isFalse();
    assertThat(r.appliesTo(PY311, Set.of("test-suite"))).isTrue();
    assertThat(r.appliesTo(PY311, Set.of("docs"))).isFalse();
    Requirement both =
        Requirement.parse(
            "tzdata; extra == 'tz' and (sys_platform == 'win32' or python_version >= '3.11')");
    assertThat(both.appliesTo(PY311, Set.of("tz"))).isTrue();
    assertThat(both.appliesTo(PY311, Set.of())).isFalse();
    assertThat(Requirement.parse("six").appliesTo(PY311, Set.of("any"))).isTrue();
  }

  @Test
  void markerCanonicalFormKeepsMeaning() throws Exception {
    Requirement r =
        Requirement.parse("a; (os_name=='posix' and (extra=='x')) or python_version<\"3\"");
    assertThat(r.marker())
        .isEqualTo(
            Optional.of("(os_name == \"posix\" and extra == \"x\") or python_version < \"3\""));
    assertThat(Requirement.parse(r.canonical()))
        .isEqualTo(new Requirement(r.name(), r.extras(), r.specifier(), r.marker(), r.canonical()));
  }

  private static boolean applies(String text, Map<String, String> env) throws KilnException {
    return Requirement.parse(text).appliesTo(env, Set.of());
  }
}
