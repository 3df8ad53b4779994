package dev.kiln.egress;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;

/** Signed egress credentials: what they carry, and what is refused. */
class EgressCredentialsTest {
  private static final byte[] SECRET =
      "a secret of 32 bytes, shared!!!!".getBytes(StandardCharsets.UTF_8);

  @Test
  void aCredentialCarriesItsClientAndOnlyTheSameKeyAcceptsIt() throws Exception {
    EgressCredentials c = EgressCredentials.fromSharedSecret(SECRET);
    EgressProxy.Client client =
        new EgressProxy.Client(
            "acme.corp",
            "fetch rates",
            "5c1f2a",
            EgressPolicy.parse("*.amazonaws.com,api.example.com:443"),
            null);
    String token = c.issue(client);
    assertThat(token).matches("v1(\\.[A-Za-z0-9_-]*){6}");
    assertThat(c.verify(token)).contains(client);
    EgressProxy.Client fromFile =
        new EgressProxy.Client("acme", "fetch", "k", EgressPolicy.parse("a.test"), "/etc/e.toml");
    assertThat(c.verify(c.issue(fromFile))).contains(fromFile);

    byte[] other = SECRET.clone();
    other[0] ^= 1;
    assertThat(EgressCredentials.fromSharedSecret(other).verify(token)).isEmpty();
  }

  @Test
  void aChangedFieldOrAMalformedCredentialIsRefused() throws Exception {
    EgressCredentials c = EgressCredentials.fromSharedSecret(SECRET);
    String token =
        c.issue(new EgressProxy.Client("acme", "w", "k", EgressPolicy.parse("a.test"), null));
    String[] f = token.split("\\.");
    // The allow-list widened to everything under .test: the signature no longer matches.
    f[4] =
        java.util.Base64.getUrlEncoder()
            .withoutPadding()
            .encodeToString("*.test".getBytes(StandardCharsets.UTF_8));
    assertThat(c.verify(String.join(".", f))).isEmpty();
    assertThat(c.verify("")).isEmpty();
    assertThat(c.verify("v1.")).isEmpty();
    assertThat(c.verify("v1.a.b.c.d.e.f.g")).isEmpty();
    assertThat(c.verify("v1.!!.b.c.d.e.f")).isEmpty();
    assertThat(c.verify(token.substring(0, token.length() - 2))).isEmpty();
    assertThatThrownBy(() -> EgressCredentials.fromSharedSecret(new byte[8]))
        .hasMessageContaining("at least 16");
  }
}
