package dev.kiln.egress;

import static org.assertj.core.api.Assertions.assertThat;

import java.nio.ByteBuffer;
import java.util.List;
import javax.net.ssl.SNIHostName;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import org.junit.jupiter.api.Test;

/** The server name read from a ClientHello that the JDK's own TLS client writes. */
class ClientHelloTest {
  private static byte[] clientHello(String sni) throws Exception {
    SSLEngine engine = SSLContext.getDefault().createSSLEngine("ignored.example", 443);
    engine.setUseClientMode(true);
    SSLParameters p = engine.getSSLParameters();
    p.setServerNames(sni == null ? List.of() : List.of(new SNIHostName(sni)));
    engine.setSSLParameters(p);
    ByteBuffer out = ByteBuffer.allocate(engine.getSession().getPacketBufferSize());
    engine.beginHandshake();
    engine.wrap(ByteBuffer.allocate(0), out);
    out.flip();
    byte[] b = new byte[out.remaining()];
    out.get(b);
    return b;
  }

  @Test
  void theNameAClientAsksForIsRead() throws Exception {
    assertThat(ClientHello.serverName(clientHello("api.example.com"))).contains("api.example.com");
    assertThat(ClientHello.serverName(clientHello(null))).isEmpty();
    assertThat(ClientHello.serverName("GET / HTTP/1.1\r\n".getBytes())).isEmpty();
    byte[] cut = clientHello("api.example.com");
    assertThat(ClientHello.serverName(java.util.Arrays.copyOf(cut, 40))).isEmpty();
  }
}
