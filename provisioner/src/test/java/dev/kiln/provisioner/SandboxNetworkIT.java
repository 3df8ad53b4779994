package dev.kiln.provisioner;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A sandbox on a {@link SandboxNetwork} (real network namespaces and veth links, real gVisor): the
 * host reaches a server in it at its address, it reaches the host end's address and nothing else,
 * and processes exec'd into it work as in any sandbox.
 */
class SandboxNetworkIT {
  @TempDir static Path workRoot;

  static RunscProvisioner provisioner;
  static SandboxImage.Layer base;

  /** Listens on 0.0.0.0:7070 in the sandbox and answers each connection's line upper-cased. */
  private static final String UPPER_SERVER =
      """
      import socket
      s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
      s.bind(('0.0.0.0', 7070)); s.listen()
      print('listening', flush=True)
      while True:
          c, _ = s.accept()
          f = c.makefile('rwb')
          f.write(f.readline().upper()); f.flush(); c.close()
      """;

  @BeforeAll
  static void start() throws Exception {
    base = TestImages.baseLayer();
    provisioner =
        RunscProvisioner.builder().workDir(Files.createDirectory(workRoot.resolve("w"))).build();
  }

  @AfterAll
  static void stop() {
    provisioner.close();
  }

  private static String ask(InetSocketAddress at, String line) throws Exception {
    try (Socket s = new Socket()) {
      s.connect(at, 5000);
      s.setSoTimeout(10_000);
      OutputStream out = s.getOutputStream();
      out.write((line + "\n").getBytes(StandardCharsets.UTF_8));
      out.flush();
      return new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.UTF_8))
          .readLine();
    }
  }

  /** A sandbox on {@code net} running {@link #UPPER_SERVER}, returned once it listens. */
  private static Sandbox upperServer(String name, SandboxNetwork net) throws Exception {
    Sandbox sandbox =
        provisioner.start(
            TestImages.spec(name, TestImages.image(List.of(base), TestImages.python(UPPER_SERVER)))
                .withNetwork(net));
    // The server prints 'listening' once bound; the init's 'ready' came before.
    assertThat(TestImages.readLine(sandbox.init())).isEqualTo("listening");
    return sandbox;
  }

  @Test
  void theHostReachesAServerInTheSandboxAtItsAddress() throws Exception {
    try (SandboxNetwork net = SandboxNetwork.create(100);
        Sandbox sandbox = upperServer("net", net)) {
      InetSocketAddress at = new InetSocketAddress(net.sandboxAddress(), 7070);
      assertThat(ask(at, "hello")).isEqualTo("HELLO");
      assertThat(ask(at, "again")).isEqualTo("AGAIN");

      // exec works in a sandbox on a network, and sees that network's address only.
      SandboxProcess p =
          sandbox.exec(
              List.of(
                  "/usr/bin/python3",
                  "-c",
                  "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM);"
                      + " s.connect(('"
                      + net.hostAddress().getHostAddress()
                      + "', 9)); print(s.getsockname()[0])"),
              List.of());
      assertThat(TestImages.readAll(p).strip()).isEqualTo(net.sandboxAddress().getHostAddress());
    }
  }

  @Test
  void theSandboxReachesTheHostEndAndNothingElse() throws Exception {
    try (SandboxNetwork net = SandboxNetwork.create(200);
        ServerSocket hostEnd = new ServerSocket(0, 50, net.hostAddress());
        ServerSocket elsewhere =
            new ServerSocket(0, 50, java.net.InetAddress.getLoopbackAddress())) {
      String code =
          """
          import socket
          def reach(host, port):
              try:
                  socket.create_connection((host, port), timeout=3).close(); return 'yes'
              except OSError as e:
                  return 'no'
          print(reach('%s', %d), reach('127.0.0.1', %d), reach('1.1.1.1', 53), flush=True)
          """
              .formatted(
                  net.hostAddress().getHostAddress(),
                  hostEnd.getLocalPort(),
                  elsewhere.getLocalPort());
      try (Sandbox sandbox =
          provisioner.start(
              TestImages.spec("reach", TestImages.image(List.of(base), TestImages.python(code)))
                  .withNetwork(net))) {
        assertThat(TestImages.readLine(sandbox.init())).isEqualTo("yes no no");
      }
    }
  }

  @Test
  void aSandboxWithoutANetworkHasOnlyItsLoopback() throws Exception {
    String code =
        """
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.connect(('%s', 9)); print('routed', flush=True)
        except OSError:
            print('unreachable', flush=True)
        """
            .formatted(SandboxNetwork.SUBNET + ".0.1");
    try (Sandbox sandbox =
        provisioner.start(
            TestImages.spec("none", TestImages.image(List.of(base), TestImages.python(code))))) {
      assertThat(TestImages.readLine(sandbox.init())).isEqualTo("unreachable");
    }
  }

  @Test
  void networksNoProcessUsesAreReapedAndOnesInUseAreNot() throws Exception {
    SandboxNetwork left = SandboxNetwork.create(400); // as a process that died leaves one
    try (SandboxNetwork used = SandboxNetwork.create(500);
        Sandbox sandbox = upperServer("used", used)) {
      assertThat(SandboxNetwork.reapUnused(Duration.ZERO)).isGreaterThanOrEqualTo(1);
      assertThat(left.namespace()).doesNotExist();
      assertThat(used.namespace()).exists();
      assertThat(ask(new InetSocketAddress(used.sandboxAddress(), 7070), "still"))
          .isEqualTo("STILL");
    } finally {
      left.close();
    }
  }

  @Test
  void aClosedNetworkIsGoneAndItsNameTakenIsSkipped() throws Exception {
    SandboxNetwork a = SandboxNetwork.create(300);
    try (SandboxNetwork b = SandboxNetwork.create(300)) {
      assertThat(b.sandboxAddress()).isNotEqualTo(a.sandboxAddress());
      assertThat(b.namespace()).isNotEqualTo(a.namespace());
    } finally {
      a.close();
    }
    assertThat(a.namespace()).doesNotExist();
  }
}
