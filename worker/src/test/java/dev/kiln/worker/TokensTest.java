package dev.kiln.worker;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class TokensTest {

  static final ContentKey KEY = new ContentKey("0123456789abcdef".repeat(4));
  static final ContentKey OTHER_KEY = new ContentKey("fedcba9876543210".repeat(4));

  @TempDir Path dir;

  private static Tokens tokens(int fill) {
    byte[] secret = new byte[32];
    Arrays.fill(secret, (byte) fill);
    return new Tokens(secret);
  }

  @Test
  void aTokenCarriesTenantAndKey() {
    Tokens tokens = tokens(1);
    String token = tokens.issue(new Tenant("acme"), KEY);

    assertThat(tokens.verify(token)).contains(new Tokens.Grant(new Tenant("acme"), KEY));
  }

  @Test
  void tokensAreDeterministic() {
    assertThat(tokens(1).issue(new Tenant("acme"), KEY))
        .isEqualTo(tokens(1).issue(new Tenant("acme"), KEY));
    assertThat(tokens(1).issue(new Tenant("acme"), KEY))
        .isNotEqualTo(tokens(1).issue(new Tenant("acme"), OTHER_KEY));
    assertThat(tokens(1).issue(new Tenant("acme"), KEY))
        .isNotEqualTo(tokens(1).issue(new Tenant("acme2"), KEY));
  }

  @Test
  void anyTenantNameSurvives() {
    Tokens tokens = tokens(1);
    for (String tenant : new String[] {"a.b.c", "tenant with spaces", "租户", "x:y/z=="}) {
      assertThat(tokens.verify(tokens.issue(new Tenant(tenant), KEY)))
          .contains(new Tokens.Grant(new Tenant(tenant), KEY));
    }
  }

  @Test
  void anotherSecretsTokenIsRejected() {
    assertThat(tokens(1).verify(tokens(2).issue(new Tenant("acme"), KEY))).isEmpty();
  }

  @Test
  void tamperedTokensAreRejected() {
    Tokens tokens = tokens(1);
    String token = tokens.issue(new Tenant("acme"), KEY);
    String otherTenant = tokens.issue(new Tenant("evil"), KEY);
    String[] parts = token.split("\\.");
    String[] evil = otherTenant.split("\\.");

    assertThat(tokens.verify(parts[0] + "." + parts[1] + "." + evil[2] + "." + parts[3])).isEmpty();
    assertThat(tokens.verify(parts[0] + "." + OTHER_KEY.hex() + "." + parts[2] + "." + parts[3]))
        .isEmpty();
    char last = token.charAt(token.length() - 1);
    assertThat(tokens.verify(token.substring(0, token.length() - 1) + (last == 'A' ? 'B' : 'A')))
        .isEmpty();
  }

  @Test
  void malformedTokensAreRejected() {
    Tokens tokens = tokens(1);
    String token = tokens.issue(new Tenant("acme"), KEY);
    for (String bad :
        new String[] {
          null,
          "",
          "v1",
          "v1...",
          token + ".",
          "v2" + token.substring(2),
          token + "x",
          token.replace('.', ','),
          "x".repeat(10_000),
          token.toUpperCase()
        }) {
      assertThat(tokens.verify(bad)).as("%s", bad).isEmpty();
    }
  }

  @Test
  void shortSecretsAreRefused() {
    assertThatThrownBy(() -> new Tokens(new byte[31]))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("at least 32 bytes");
  }

  @Test
  void loadOrCreateMakesAPrivateSecretAndReusesIt() throws IOException {
    Path file = dir.resolve("state/token.secret");

    Tokens first = Tokens.loadOrCreate(file);
    Tokens second = Tokens.loadOrCreate(file);

    assertThat(Files.size(file)).isEqualTo(32);
    assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(file)))
        .isEqualTo("rw-------");
    assertThat(second.verify(first.issue(new Tenant("acme"), KEY)))
        .contains(new Tokens.Grant(new Tenant("acme"), KEY));
    try (var files = Files.list(file.getParent())) {
      assertThat(files).containsExactly(file); // no temp files left
    }
  }

  @Test
  void aTruncatedSecretFileIsAnError() throws IOException {
    Path file = dir.resolve("token.secret");
    Files.write(file, new byte[5]);

    assertThatThrownBy(() -> Tokens.loadOrCreate(file))
        .isInstanceOf(IOException.class)
        .hasMessageContaining("has 5 bytes")
        .hasMessageContaining("delete it");
  }
}
