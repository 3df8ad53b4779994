package dev.kiln.egress;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.net.InetAddress;
import java.util.List;
import org.junit.jupiter.api.Test;

class EgressPolicyTest {
  @Test
  void namesWildcardsAddressesAndPorts() throws Exception {
    EgressPolicy p =
        EgressPolicy.parse(
            " api.example.com , *.amazonaws.com:443, 10.1.2.3:8080, [2001:DB8::1], Bücher.example");
    assertThat(p.allowing("api.example.com", 1234)).isPresent();
    assertThat(p.allowing("API.Example.COM.", 80)).as("case and a trailing dot").isPresent();
    assertThat(p.allowing("www.example.com", 80)).isEmpty();
    assertThat(p.allowing("s3.amazonaws.com", 443)).isPresent();
    assertThat(p.allowing("s3.us-east-1.amazonaws.com", 443)).as("more than one label").isPresent();
    assertThat(p.allowing("amazonaws.com", 443)).as("the domain itself").isEmpty();
    assertThat(p.allowing("s3.amazonaws.com", 80)).as("another port").isEmpty();
    assertThat(p.allowing("evilamazonaws.com", 443)).isEmpty();
    assertThat(p.allowing("10.1.2.3", 8080)).isPresent();
    assertThat(p.allowing("10.1.2.3", 443)).isEmpty();
    assertThat(p.allowing("[2001:db8::1]", 443)).isPresent();
    assertThat(p.allowing("xn--bcher-kva.example", 443)).as("an IDN, as ASCII").isPresent();
    assertThat(p.toString())
        .isEqualTo(
            "api.example.com,*.amazonaws.com:443,10.1.2.3:8080,[2001:db8::1],xn--bcher-kva.example");
    assertThat(EgressPolicy.parse("").isEmpty()).isTrue();
    assertThat(EgressPolicy.parse(null)).isEqualTo(EgressPolicy.NONE);
  }

  @Test
  void everyBadPatternIsNamedInOneError() {
    assertThatThrownBy(
            () ->
                EgressPolicy.parse(
                    "ok.example.com, *.com, api.*.example.com, host:99999, a_b.c, ::1"))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.INVALID_WORKER_OPTION))
        .hasMessageContaining("'*.com'")
        .hasMessageContaining("'api.*.example.com'")
        .hasMessageContaining("'host:99999'")
        .hasMessageContaining("'a_b.c'")
        .hasMessageContaining("'::1': an IPv6 address goes in brackets")
        .hasMessageNotContaining("'ok.example.com'")
        .hasMessageContaining("*.amazonaws.com");
  }

  @Test
  void theDenyListCoversMetadataPrivateAndLoopbackAddressesMappedOrNot() throws Exception {
    DenyList d = DenyList.defaults();
    for (String a :
        List.of(
            "169.254.169.254",
            "10.0.0.1",
            "172.20.1.1",
            "192.168.1.1",
            "127.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "100.64.0.1")) {
      assertThat(d.denying(InetAddress.getByName(a))).as(a).isPresent();
    }
    for (String a :
        List.of("93.184.216.34", "172.32.0.1", "2606:2800:220:1::1", "::ffff:8.8.8.8")) {
      assertThat(d.denying(InetAddress.getByName(a))).as(a).isEmpty();
    }
    DenyList only = DenyList.parse(List.of("127.0.0.2", "169.254.0.0/16"));
    assertThat(only.denying(InetAddress.getByName("127.0.0.2"))).isPresent();
    assertThat(only.denying(InetAddress.getByName("127.0.0.1"))).isEmpty();
    assertThatThrownBy(() -> DenyList.parse(List.of("10.0.0.0/33", "example.com", "10.0.0.0/x")))
        .isInstanceOfSatisfying(
            KilnException.class,
            e -> assertThat(e.code()).isEqualTo(ErrorCode.INVALID_CONFIGURATION))
        .hasMessageContaining("'10.0.0.0/33'")
        .hasMessageContaining("'example.com': not an IP address")
        .hasMessageContaining("'10.0.0.0/x'");
  }
}
