package dev.kiln.resolver;

import static dev.kiln.resolver.WheelBuilder.wheel;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.List;
import java.util.Optional;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Resolution against a real HTTP package index ({@link TestPackageIndex}) serving wheels built by
 * the test: transitive dependencies, extras, markers, backtracking, conflicts, missing and
 * incompatible wheels, hash mismatches, caches, auth, several indexes and file:// indexes.
 */
class PackageResolverIT {
  static final TargetEnvironment PY311 = Targets.defaultBase();

  @TempDir Path cache;
  TestPackageIndex index;
  PackageResolver resolver;

  @BeforeEach
  void startIndex() throws IOException {
    index = TestPackageIndex.start();
  }

  @AfterEach
  void stop() {
    if (resolver != null) {
      resolver.close();
    }
    index.close();
  }

  private PackageResolver resolver() throws IOException {
    resolver = new PackageResolver(config(index.url()), cache);
    return resolver;
  }

  private static IndexConfig config(URI... urls) {
    return new IndexConfig(
        List.of(urls), Optional.empty(), Optional.empty(), Duration.ofSeconds(10));
  }

  private static List<String> pins(Lock lock) {
    return lock.packages().stream().map(LockedPackage::toString).toList();
  }

  /** app[fancy] with a dependency, an extra, markers that exclude, and a newer pre-release. */
  private void addAppFamily() {
    index
        .add(
            wheel("app", "1.0")
                .requires(
                    "lib>=1.0",
                    "winonly; sys_platform == 'win32'",
                    "Extra_Dep; extra == 'fancy'",
                    "newpy; python_version >= '3.12'")
                .providesExtra("fancy"))
        .add(wheel("lib", "1.0"))
        .add(wheel("lib", "2.0").requires("six>=1.5"))
        .add(wheel("lib", "3.0b1"))
        .add(wheel("six", "1.16.0"))
        .add(wheel("six", "1.17.0"))
        .add(wheel("extra-dep", "0.3"))
        .add(wheel("winonly", "1.0"))
        .add(wheel("newpy", "1.0"));
  }

  @ParameterizedTest(name = "json={0}")
  @ValueSource(booleans = {true, false})
  void resolvesDependenciesExtrasAndMarkersOverJsonAndHtml(boolean json) throws Exception {
    addAppFamily();
    index.json(json);
    Lock lock = resolver().resolve(List.of("app[fancy]"), PY311);
    assertThat(pins(lock)).containsExactly("app==1.0", "extra-dep==0.3", "lib==2.0", "six==1.17.0");
    LockedPackage lib = lock.packages().get(2);
    assertThat(lib.filename()).isEqualTo("lib-2.0-py3-none-any.whl");
    assertThat(lib.sha256()).isEqualTo(index.sha256("lib-2.0-py3-none-any.whl"));
    assertThat(lib.url())
        .isEqualTo(URI.create(index.url() + "../files/lib-2.0-py3-none-any.whl").normalize());
    assertThat(lock.canonical())
        .startsWith("app==1.0 app-1.0-py3-none-any.whl sha256=")
        .contains("\nlib==2.0 lib-2.0-py3-none-any.whl sha256=" + lib.sha256() + "\n");
    assertThat(index.accepts())
        .first()
        .asString()
        .startsWith("application/vnd.pypi.simple.v1+json");

    // Without the extra, its dependency is not needed; on 3.12 the marker adds newpy.
    assertThat(pins(resolver.resolve(List.of("app"), PY311)))
        .containsExactly("app==1.0", "lib==2.0", "six==1.17.0");
    assertThat(pins(resolver.resolve(List.of("app"), Targets.python312())))
        .containsExactly("app==1.0", "lib==2.0", "newpy==1.0", "six==1.17.0");
  }

  @Test
  void pep658MetadataIsUsedInsteadOfDownloadingWheels() throws Exception {
    addAppFamily();
    resolver().resolve(List.of("app[fancy]"), PY311);
    assertThat(index.requests()).anyMatch(p -> p.endsWith(".whl.metadata"));
    assertThat(index.requests()).noneMatch(p -> p.endsWith(".whl"));
  }

  @Test
  void withoutPep658TheWheelIsDownloadedOnceAndReusedForTheDownload() throws Exception {
    addAppFamily();
    index.pep658(false).json(false);
    Lock lock = resolver().resolve(List.of("lib==2.0"), PY311);
    assertThat(index.requests()).contains("/files/lib-2.0-py3-none-any.whl");
    index.clearRequests();
    LockedPackage lib =
        lock.packages().stream().filter(p -> p.name().equals("lib")).findFirst().orElseThrow();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    resolver.download(lib, out);
    assertThat(TestPackageIndex.hex(out.toByteArray())).isEqualTo(lib.sha256());
    assertThat(index.requests()).as("served from the wheel kept during resolution").isEmpty();
    // A second download goes to the index (the first handed the cached copy over).
    ByteArrayOutputStream again = new ByteArrayOutputStream();
    resolver.download(lib, again);
    assertThat(again.toByteArray()).isEqualTo(out.toByteArray());
    assertThat(index.requests()).containsExactly("/files/lib-2.0-py3-none-any.whl");
  }

  @Test
  void backtracksToAnOlderVersionWhenTheNewestConflicts() throws Exception {
    // b 2.0 needs d==1.0 but c needs d>=2: only b 1.0 fits.
    index
        .add(wheel("a", "1.0").requires("b"))
        .add(wheel("b", "2.0").requires("d==1.0"))
        .add(wheel("b", "1.0").requires("d==2.0"))
        .add(wheel("c", "1.0").requires("d>=2"))
        .add(wheel("d", "1.0"))
        .add(wheel("d", "2.0"));
    assertThat(pins(resolver().resolve(List.of("a", "c"), PY311)))
        .containsExactly("a==1.0", "b==1.0", "c==1.0", "d==2.0");
  }

  @Test
  void backjumpsToAnEarlierChoice() throws Exception {
    // x is chosen first (newest 2.0, needing z<2); y then needs z>=2, so x must go back to 1.0.
    index
        .add(wheel("x", "2.0").requires("z<2"))
        .add(wheel("x", "1.0"))
        .add(wheel("y", "1.0").requires("z>=2"))
        .add(wheel("z", "1.0"))
        .add(wheel("z", "2.0"));
    assertThat(pins(resolver().resolve(List.of("x", "y"), PY311)))
        .containsExactly("x==1.0", "y==1.0", "z==2.0");
  }

  @Test
  void extrasOfAnAlreadyChosenPackageAddTheirDependencies() throws Exception {
    index
        .add(wheel("core", "1.0").requires("speedups; extra == 'fast'").providesExtra("fast"))
        .add(wheel("plugin", "1.0").requires("core[fast]>=1"))
        .add(wheel("speedups", "0.9"));
    assertThat(pins(resolver().resolve(List.of("core", "plugin"), PY311)))
        .containsExactly("core==1.0", "plugin==1.0", "speedups==0.9");
  }

  @Test
  void conflictingRequirementsAreNamed() throws Exception {
    index.add(wheel("p", "1.0")).add(wheel("p", "2.0")).add(wheel("q", "1.0").requires("p<2"));
    assertThatThrownBy(() -> resolver().resolve(List.of("p>=2", "q"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGE_CONFLICT))
        .hasMessageContaining("'p>=2'")
        .hasMessageContaining("requires 'p<2'")
        .hasMessageContaining("q 1.0");
    assertThatThrownBy(() -> resolver.resolve(List.of("p>=2", "p<2"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGE_CONFLICT))
        .hasMessageContaining("conflicting requirements for 'p'")
        .hasMessageContaining("'p>=2' (requested by the UDF)")
        .hasMessageContaining("'p<2' (requested by the UDF)");
    assertThatThrownBy(() -> resolver.resolve(List.of("p>=5"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.NO_MATCHING_VERSION))
        .hasMessageContaining("no version of 'p' matches 'p>=5'")
        .hasMessageContaining("2.0, 1.0");
  }

  @Test
  void missingPackagesAndWheelsAreClearErrors() throws Exception {
    index
        .addFile("sdistonly", "sdistonly-1.0.tar.gz", new byte[] {1, 2, 3})
        .add(wheel("winpkg", "1.0").tag("cp311-cp311-win_amd64"))
        .add(wheel("needs-sdist", "1.0").requires("sdistonly"));
    resolver();
    assertThatThrownBy(() -> resolver.resolve(List.of("no-such-thing"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGE_NOT_FOUND))
        .hasMessageContaining("no package named 'no-such-thing'")
        .hasMessageContaining(index.url().toString());
    assertThatThrownBy(() -> resolver.resolve(List.of("sdistonly"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.NO_COMPATIBLE_WHEEL))
        .hasMessageContaining("'sdistonly'")
        .hasMessageContaining("only source distributions")
        .hasMessageContaining("sdistonly-1.0.tar.gz");
    assertThatThrownBy(() -> resolver.resolve(List.of("winpkg"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class, e -> assertThat(e.code()).isEqualTo(ErrorCode.NO_COMPATIBLE_WHEEL))
        .hasMessageContaining("no wheel of 'winpkg'")
        .hasMessageContaining("winpkg-1.0-cp311-cp311-win_amd64.whl")
        .hasMessageContaining("Tags tried")
        .hasMessageContaining("cp311-cp311-manylinux_2_36_x86_64");
    assertThatThrownBy(() -> resolver.resolve(List.of("needs-sdist"), PY311))
        .hasMessageContaining("needs-sdist 1.0 requires 'sdistonly'")
        .hasMessageContaining("only source distributions");
  }

  @Test
  void aDownloadWhoseHashDiffersIsRefused() throws Exception {
    index.add(wheel("tampered", "1.0")).pep658(false).corrupt("tampered-1.0-py3-none-any.whl");
    assertThatThrownBy(() -> resolver().resolve(List.of("tampered"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGE_HASH_MISMATCH))
        .hasMessageContaining("sha256 mismatch for tampered-1.0-py3-none-any.whl")
        .hasMessageContaining(index.sha256("tampered-1.0-py3-none-any.whl"));

    // download() checks too: a lock entry whose hash is not the file's.
    index.add(wheel("honest", "1.0"));
    Lock lock = resolver.resolve(List.of("honest"), PY311);
    LockedPackage p = lock.packages().get(0);
    LockedPackage wrong =
        new LockedPackage(p.name(), p.version(), p.filename(), p.url(), "0".repeat(64));
    assertThatThrownBy(() -> resolver.download(wrong, new ByteArrayOutputStream()))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGE_HASH_MISMATCH))
        .hasMessageContaining("honest-1.0-py3-none-any.whl");
  }

  @Test
  void requiresPythonAndYankedFilesAreHonoured() throws Exception {
    index
        .add(wheel("modern", "1.0"))
        .add(wheel("modern", "2.0").requiresPython(">=3.12"))
        .add(wheel("yanky", "1.0"))
        .add(wheel("yanky", "2.0"))
        .yank("yanky-2.0-py3-none-any.whl")
        .add(wheel("pre", "1.0b1"));
    resolver();
    assertThat(pins(resolver.resolve(List.of("modern"), PY311))).containsExactly("modern==1.0");
    assertThat(pins(resolver.resolve(List.of("modern"), Targets.python312())))
        .containsExactly("modern==2.0");
    assertThatThrownBy(() -> resolver.resolve(List.of("modern==2.0"), PY311))
        .hasMessageContaining("requires Python >=3.12");
    assertThat(pins(resolver.resolve(List.of("yanky"), PY311))).containsExactly("yanky==1.0");
    assertThat(pins(resolver.resolve(List.of("yanky==2.0"), PY311))).containsExactly("yanky==2.0");
    // Only a pre-release exists: it is used rather than failing.
    assertThat(pins(resolver.resolve(List.of("pre"), PY311))).containsExactly("pre==1.0b1");
  }

  @Test
  void pinnedRequirementsResolveFromTheCacheWithNoNetwork() throws Exception {
    addAppFamily();
    Lock first = resolver().resolve(List.of("app[fancy]==1.0", "lib==2.0"), PY311);
    resolver.close();
    index.close(); // nothing answers on the index any more
    resolver = new PackageResolver(config(index.url()), cache);
    // A restart and a different spelling of the same requirements: still no network needed.
    Lock again = resolver.resolve(List.of("LIB == 2.0.0", "App[Fancy] ==1.0"), PY311);
    assertThat(again).isEqualTo(first);
    // Unpinned requirements that were never resolved need the index.
    assertThatThrownBy(() -> resolver.resolve(List.of("app"), PY311))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("unreachable");
  }

  @Test
  void unpinnedLocksAreRefreshedInTheBackgroundOnceStaleAndSurviveAnIndexOutage() throws Exception {
    index.add(wheel("lib", "1.0"));
    MutableClock clock = new MutableClock();
    resolver = new PackageResolver(config(index.url()), cache, Duration.ofMinutes(10), clock);
    assertThat(pins(resolver.resolve(List.of("lib"), PY311))).containsExactly("lib==1.0");
    index.add(wheel("lib", "1.1"));
    index.clearRequests();
    assertThat(pins(resolver.resolve(List.of("lib"), PY311))).containsExactly("lib==1.0");
    assertThat(index.requests()).as("a fresh lock needs no index").isEmpty();
    clock.advance(Duration.ofMinutes(11));
    // Stale: answered at once from the cache, re-resolved behind the caller's back.
    assertThat(pins(resolver.resolve(List.of("lib"), PY311))).containsExactly("lib==1.0");
    assertThat(eventually(() -> pins(resolver.resolve(List.of("lib"), PY311))))
        .containsExactly("lib==1.1");
    clock.advance(Duration.ofMinutes(11));
    index.close();
    // The index is down and the lock is stale: the last lock is better than no UDF.
    assertThat(pins(resolver.resolve(List.of("lib"), PY311))).containsExactly("lib==1.1");
    assertThat(pins(resolver.resolve(List.of("lib"), PY311))).containsExactly("lib==1.1");
  }

  /** Polls until the value changes from the first one seen, for up to 10 seconds. */
  private static List<String> eventually(java.util.concurrent.Callable<List<String>> read)
      throws Exception {
    List<String> first = read.call();
    long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
    List<String> now = first;
    while (now.equals(first) && System.nanoTime() < deadline) {
      java.util.concurrent.locks.LockSupport.parkNanos(1_000_000); // poll, with a deadline
      now = read.call();
    }
    return now;
  }

  @Test
  void theFirstIndexThatHasAPackageWins() throws Exception {
    try (TestPackageIndex second = TestPackageIndex.start()) {
      index.add(wheel("internal", "1.0"));
      second.add(wheel("internal", "99.0")).add(wheel("public-only", "2.0"));
      resolver = new PackageResolver(config(index.url(), second.url()), cache);
      Lock lock = resolver.resolve(List.of("internal", "public-only"), PY311);
      assertThat(pins(lock)).containsExactly("internal==1.0", "public-only==2.0");
      assertThat(second.requests()).doesNotContain("/simple/internal/");
    }
  }

  @Test
  void basicAuthFromTheUrlOrTheConfig() throws Exception {
    index.add(wheel("secret", "1.0")).requireBasicAuth("kiln", "s3cr3t");
    resolver = new PackageResolver(config(index.url()), cache.resolve("a"));
    assertThatThrownBy(() -> resolver.resolve(List.of("secret"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.PACKAGE_INDEX_UNAVAILABLE))
        .hasMessageContaining("HTTP 401")
        .hasMessageContaining("credentials");
    resolver.close();
    URI withUser = URI.create("http://kiln:s3cr3t@127.0.0.1:" + index.port() + "/simple/");
    resolver = new PackageResolver(config(withUser), cache.resolve("b"));
    Lock lock = resolver.resolve(List.of("secret"), PY311);
    assertThat(pins(lock)).containsExactly("secret==1.0");
    assertThat(lock.packages().get(0).url().getUserInfo()).isNull();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    resolver.download(lock.packages().get(0), out);
    assertThat(TestPackageIndex.hex(out.toByteArray())).isEqualTo(lock.packages().get(0).sha256());
    resolver.close();
    resolver =
        new PackageResolver(
            new IndexConfig(
                List.of(index.url()),
                Optional.of("kiln"),
                Optional.of("s3cr3t"),
                Duration.ofSeconds(10)),
            cache.resolve("c"));
    assertThat(pins(resolver.resolve(List.of("secret"), PY311))).containsExactly("secret==1.0");
  }

  @Test
  void fileIndexesResolveLikeHttpOnes(@TempDir Path tree) throws Exception {
    addAppFamily();
    Lock overHttp = resolver().resolve(List.of("app[fancy]"), PY311);
    Path simple = index.writeTree(tree);
    try (PackageResolver files =
        new PackageResolver(
            IndexConfig.of(List.of(simple.toUri().toString())), tree.resolve("cache"))) {
      Lock fromFiles = files.resolve(List.of("app[fancy]"), PY311);
      assertThat(fromFiles.canonical()).isEqualTo(overHttp.canonical());
      LockedPackage app = fromFiles.packages().get(0);
      assertThat(app.url().getScheme()).isEqualTo("file");
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      files.download(app, out);
      assertThat(TestPackageIndex.hex(out.toByteArray())).isEqualTo(app.sha256());
    }
    // A flat directory of wheels (no index.html, no hashes) works too.
    Path flat = tree.resolve("flat");
    wheel("flatpkg", "0.1").writeTo(flat);
    try (PackageResolver files =
        new PackageResolver(IndexConfig.of(List.of(flat.toString())), tree.resolve("cache2"))) {
      Lock lock = files.resolve(List.of("flatpkg"), PY311);
      assertThat(pins(lock)).containsExactly("flatpkg==0.1");
      assertThat(lock.packages().get(0).sha256())
          .isEqualTo(TestPackageIndex.hex(wheel("flatpkg", "0.1").bytes()));
    }
  }

  @Test
  void resolutionGivesUpWithAClearErrorWhenTheSearchGrowsTooLarge() throws Exception {
    // Every version of 'wide' needs its own 'leaf' version, but 'leaf==0' is pinned: only the
    // oldest 'wide' fits, and the resolver is allowed 10 attempts.
    for (int i = 0; i <= 20; i++) {
      index
          .add(wheel("wide", "1." + i).requires("leaf==" + i))
          .add(wheel("leaf", String.valueOf(i)));
    }
    resolver =
        new PackageResolver(
            config(index.url()), cache, Duration.ofMinutes(10), Clock.systemUTC(), 10);
    assertThatThrownBy(() -> resolver.resolve(List.of("wide", "leaf==0"), PY311))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.RESOLUTION_TOO_COMPLEX))
        .hasMessageContaining("gave up after trying 10 package versions")
        .hasMessageContaining("pin the versions");
    resolver.close();
    resolver = new PackageResolver(config(index.url()), cache.resolve("more"));
    assertThat(pins(resolver.resolve(List.of("wide", "leaf==0"), PY311)))
        .containsExactly("leaf==0", "wide==1.0");
  }

  @Test
  void requirementsThatDoNotApplyGiveTheEmptyLockWithoutTheIndex() throws Exception {
    index.close();
    Lock lock = resolver().resolve(List.of("pywin32; sys_platform == 'win32'"), PY311);
    assertThat(lock.packages()).isEmpty();
    assertThat(lock.canonical()).isEmpty();
    assertThatThrownBy(() -> resolver.resolve(List.of("numpy>=>1"), PY311))
        .isInstanceOf(KilnException.class)
        .hasMessageContaining("invalid requirement 'numpy>=>1'");
  }

  /** A clock the test moves by hand. */
  static final class MutableClock extends Clock {
    private Instant now = Instant.parse("2025-01-01T00:00:00Z");

    void advance(Duration d) {
      now = now.plus(d);
    }

    @Override
    public Instant instant() {
      return now;
    }

    @Override
    public java.time.ZoneId getZone() {
      return ZoneOffset.UTC;
    }

    @Override
    public Clock withZone(java.time.ZoneId zone) {
      return this;
    }
  }
}
