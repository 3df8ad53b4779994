package dev.kiln.controlplane;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import ch.qos.logback.classic.Logger;
import ch.qos.logback.classic.spi.ILoggingEvent;
import ch.qos.logback.core.read.ListAppender;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.Tenant;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.slf4j.LoggerFactory;

/** The --udf-env file: its format, what is refused, and when a change is seen (no sleeping). */
class UdfEnvTest {
  @TempDir Path dir;
  private final UdfProvisioningServiceTest.MutableClock clock =
      new UdfProvisioningServiceTest.MutableClock();
  private final ListAppender<ILoggingEvent> logs = new ListAppender<>();
  private final Logger logger = (Logger) LoggerFactory.getLogger(UdfEnv.class);
  private static final Tenant ACME = new Tenant("acme");

  @BeforeEach
  void captureLogs() {
    logs.start();
    logger.addAppender(logs);
  }

  @AfterEach
  void releaseLogs() {
    logger.detachAppender(logs);
  }

  private Path write(String toml) throws Exception {
    return Files.writeString(dir.resolve("udf_env.toml"), toml);
  }

  @Test
  void readsDatabendsMockFormatAndRefusesBadOrReservedKeysWithoutLoggingValues() throws Exception {
    Path file =
        write(
            """
            [udf_env]
            "acme.read_env" = { UDF_ENV_TEST = "sandbox_env_ok", COUNT = 3, lower = "secret-1", \
            UDF_SERVER_ADDR = "secret-2", KILN_UDF_DIR = "secret-3", PYTHONPATH = "secret-4" }
            "no-dot" = { A = "secret-5" }
            """);
    UdfEnv env = new UdfEnv(file, clock);
    assertThat(env.get(ACME, "read_env").vars())
        .isEqualTo(Map.of("UDF_ENV_TEST", "sandbox_env_ok", "COUNT", "3"));
    assertThat(env.get(ACME, "other").vars()).isEmpty();
    assertThat(env.get(new Tenant("globex"), "read_env").vars()).isEmpty();
    String logged =
        String.join("\n", logs.list.stream().map(ILoggingEvent::getFormattedMessage).toList());
    assertThat(logged)
        .contains("'lower'", "'UDF_SERVER_ADDR'", "'KILN_UDF_DIR'", "'PYTHONPATH'", "'no-dot'")
        .doesNotContain("secret");
  }

  @Test
  void aChangeIsSeenAtTheNextLookAndOnlyChangedEntriesGetANewVersion() throws Exception {
    Path file = write("[udf_env]\n\"acme.a\" = { X = \"1\" }\n\"acme.b\" = { Y = \"1\" }\n");
    UdfEnv env = new UdfEnv(file, clock);
    UdfEnv.Entry a = env.get(ACME, "a");
    UdfEnv.Entry b = env.get(ACME, "b");
    write("[udf_env]\n\"acme.a\" = { X = \"2\" }\n\"acme.b\" = { Y = \"1\" }\n");
    assertThat(env.get(ACME, "a")).as("looked at once a second at most").isEqualTo(a);
    clock.advance(Duration.ofSeconds(1));
    UdfEnv.Entry a2 = env.get(ACME, "a");
    assertThat(a2.vars()).containsEntry("X", "2");
    assertThat(a2.version()).isNotEqualTo(a.version());
    assertThat(env.get(ACME, "b")).as("unchanged: same version").isEqualTo(b);
    Files.delete(file);
    clock.advance(Duration.ofSeconds(1));
    assertThat(env.get(ACME, "a").vars()).as("a removed file removes the variables").isEmpty();
  }

  @Test
  void anUnparseableFileKeepsThePreviousVariables() throws Exception {
    Path file = write("[udf_env]\n\"acme.a\" = { X = \"1\" }\n");
    UdfEnv env = new UdfEnv(file, clock);
    assertThat(env.get(ACME, "a").vars()).containsEntry("X", "1");
    write("[udf_env\n\"acme.a\" = { X = \"secret-9\" ");
    clock.advance(Duration.ofSeconds(1));
    assertThat(env.get(ACME, "a").vars()).containsEntry("X", "1");
    assertThat(logs.list.stream().map(ILoggingEvent::getFormattedMessage))
        .anyMatch(m -> m.contains("is not valid TOML"))
        .noneMatch(m -> m.contains("secret"));
  }

  @Test
  void noFileMeansNoVariables() {
    assertThat(new UdfEnv(null, clock).get(ACME, "a")).isEqualTo(UdfEnv.Entry.NONE);
    assertThat(new UdfEnv(dir.resolve("missing.toml"), clock).get(ACME, "a").vars()).isEmpty();
  }

  @Test
  void secretsComeFromAFileOrKilnsEnvironmentNeverFromTheFileAndNeverIntoTheLog() throws Exception {
    Files.writeString(dir.resolve("api_key"), "s3cr3t-from-a-file\n");
    Path file =
        write(
            """
            [udf_env]
            "acme.fetch" = { REGION = "eu", API_KEY = { secret_file = "api_key" }, \
            FROM_ENV = { secret_env = "PATH" } }
            """);
    UdfEnv env = new UdfEnv(file, clock);
    UdfEnv.Entry e = env.get(ACME, "fetch");
    assertThat(e.checked())
        .isEqualTo(
            Map.of(
                "REGION",
                "eu",
                "API_KEY",
                "s3cr3t-from-a-file",
                "FROM_ENV",
                System.getenv("PATH")));

    // A rotated secret (a Kubernetes secret's file, say) is read again at the next look.
    Files.writeString(dir.resolve("api_key"), "s3cr3t-rotated");
    clock.advance(Duration.ofSeconds(1));
    UdfEnv.Entry rotated = env.get(ACME, "fetch");
    assertThat(rotated.checked()).containsEntry("API_KEY", "s3cr3t-rotated");
    assertThat(rotated.version()).as("a new value: a new resource").isNotEqualTo(e.version());
    assertThat(logs.list.stream().map(ILoggingEvent::getFormattedMessage))
        .noneMatch(m -> m.contains("s3cr3t"));
  }

  @Test
  void aSecretThatCannotBeHadFailsOnlyItsUdfSayingWhichAndWhereUntilItCan() throws Exception {
    Path file =
        write(
            """
            [udf_env]
            "acme.a" = { API_KEY = { secret_file = "missing_key" }, \
            TOKEN = { secret_env = "KILN_TEST_NO_SUCH_VARIABLE" }, ODD = { value = "x" } }
            "acme.b" = { X = "1" }
            """);
    UdfEnv env = new UdfEnv(file, clock);
    assertThat(env.get(ACME, "b").checked()).containsEntry("X", "1");
    assertThatThrownBy(() -> env.get(ACME, "a").checked())
        .isInstanceOf(KilnException.class)
        .satisfies(
            x -> assertThat(((KilnException) x).code()).isEqualTo(ErrorCode.INVALID_CONFIGURATION))
        .hasMessageContaining("entry \"acme.a\"")
        .hasMessageContaining(
            "secret API_KEY: file " + dir.resolve("missing_key") + " cannot be read")
        .hasMessageContaining(
            "secret TOKEN: the Kiln process has no environment variable KILN_TEST_NO_SUCH_VARIABLE")
        .hasMessageContaining("secret ODD: is neither { secret_file");

    // The file appears: read at the next look, without the environment file changing.
    Files.writeString(
        file, "[udf_env]\n\"acme.a\" = { API_KEY = { secret_file = \"missing_key\" } }\n");
    clock.advance(Duration.ofSeconds(1));
    assertThatThrownBy(() -> env.get(ACME, "a").checked()).hasMessageContaining("API_KEY");
    Files.writeString(dir.resolve("missing_key"), "s3cr3t-late");
    clock.advance(Duration.ofSeconds(1));
    assertThat(env.get(ACME, "a").checked()).containsEntry("API_KEY", "s3cr3t-late");
  }
}
