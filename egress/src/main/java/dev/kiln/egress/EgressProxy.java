package dev.kiln.egress;

import dev.kiln.egress.ProxyWire.Head;
import dev.kiln.egress.ProxyWire.HostPort;
import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketException;
import java.net.URI;
import java.net.URISyntaxException;
import java.net.UnknownHostException;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.Consumer;
import java.util.function.Predicate;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The only way out of a sandbox that has an {@code egress} allow-list: an HTTP proxy, which UDFs
 * reach through the usual {@code HTTP_PROXY} / {@code HTTPS_PROXY} variables ({@code requests},
 * {@code urllib} and {@code boto3} use them unchanged). Each worker has its own credentials (the
 * proxy URL's password), which say whose allow-list applies.
 *
 * <p>HTTPS goes through {@code CONNECT host:port}: the host must match the allow-list, and the TLS
 * ClientHello that follows must name the same host (SNI), so a tunnel to an allowed name cannot
 * carry a handshake for another; nothing is decrypted. Plain HTTP is admitted by the request's
 * host. The proxy resolves names itself, checks every address against the operator's {@link
 * DenyList} (a name that resolves to a metadata or private address is refused) and connects to the
 * address it checked, so a second lookup cannot change it. A refused connection gets a 403 whose
 * reason names the host and the option to change, at once, and each refusal is handed to {@code
 * denials} (for the UDF's log). Bytes are counted per worker.
 */
public final class EgressProxy implements AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(EgressProxy.class);

  /** The most a request's head may hold. */
  static final int MAX_HEAD = 16 << 10;

  /** How long a client has to send its request head, and a connection to the target to open. */
  static final int HEAD_TIMEOUT_MS = 10_000;

  static final int CONNECT_TIMEOUT_MS = 10_000;

  /** The user name in the proxy URL; the password says which worker it is. */
  public static final String USER = "kiln";

  /** Resolves host names (the system's resolver, or a fixed table in tests). */
  @FunctionalInterface
  public interface Resolver {
    List<InetAddress> resolve(String host) throws UnknownHostException;

    Resolver SYSTEM = host -> List.of(InetAddress.getAllByName(host));
  }

  /**
   * Whose connections a set of credentials stands for, and what they may reach.
   *
   * @param tenant the tenant
   * @param worker the worker (or UDF) name the allow-list belongs to
   * @param udf which of its UDF resources (a content key's short form), for the UDF's log
   * @param policy the hosts it may reach
   * @param policyFile where an operator wrote that list ({@code kiln serve --egress-policy}), or
   *     null when it is the worker's {@code egress} option: a refusal says which one to change
   */
  public record Client(
      String tenant, String worker, String udf, EgressPolicy policy, String policyFile) {
    public Client {
      Objects.requireNonNull(tenant, "tenant");
      Objects.requireNonNull(worker, "worker");
      Objects.requireNonNull(udf, "udf");
      Objects.requireNonNull(policy, "policy");
    }

    /** What to change so that {@code host} is let through. */
    String howToAllow(String host) {
      String list = (policy.isEmpty() ? "" : policy + ",") + host;
      if (policyFile == null) {
        return "add it with ALTER WORKER " + worker + " SET egress = '" + list + "'";
      }
      return "add \""
          + host
          + "\" to the entry \""
          + tenant
          + "."
          + worker
          + "\" of the egress policy file "
          + policyFile
          + " (kiln serve --egress-policy)";
    }
  }

  /** A refused connection: whose, to what, and why (the same words the UDF gets). */
  public record Denial(Client client, String host, int port, String reason) {}

  /** Bytes a worker's UDFs sent out and received through the proxy. */
  public record Traffic(long sent, long received) {}

  private record Counters(LongAdder sent, LongAdder received) {
    Counters() {
      this(new LongAdder(), new LongAdder());
    }
  }

  private final ServerSocket server;
  private final DenyList deny;
  private final Resolver resolver;
  private final Consumer<Denial> denials;
  private final Map<String, Client> clients = new ConcurrentHashMap<>();

  /** A worker, as traffic is counted. */
  public record Worker(String tenant, String worker) {}

  private final Map<Worker, Counters> traffic = new ConcurrentHashMap<>();
  private final ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor();
  private final SecureRandom random = new SecureRandom();

  private final Predicate<InetAddress> reachedAt;
  private final EgressCredentials signed;

  private EgressProxy(
      ServerSocket server,
      DenyList deny,
      Resolver resolver,
      Consumer<Denial> denials,
      Predicate<InetAddress> reachedAt,
      EgressCredentials signed) {
    this.server = server;
    this.deny = deny;
    this.resolver = resolver;
    this.denials = denials;
    this.reachedAt = reachedAt;
    this.signed = signed;
  }

  /** Listens on {@code bind} (port 0: any free port) and serves until closed. */
  public static EgressProxy start(
      InetSocketAddress bind, DenyList deny, Resolver resolver, Consumer<Denial> denials)
      throws IOException {
    return start(bind, deny, resolver, denials, a -> true, null);
  }

  /**
   * Listens on {@code bind} and serves connections made to a local address {@code reachedAt}
   * accepts (a proxy bound to every address that only sandbox networks may use); others are closed
   * at once. Credentials {@code signed} issued (none when null) are accepted beside those admitted
   * here.
   */
  public static EgressProxy start(
      InetSocketAddress bind,
      DenyList deny,
      Resolver resolver,
      Consumer<Denial> denials,
      Predicate<InetAddress> reachedAt,
      EgressCredentials signed)
      throws IOException {
    ServerSocket s = new ServerSocket();
    s.setReuseAddress(true);
    s.bind(bind, 256);
    EgressProxy p = new EgressProxy(s, deny, resolver, denials, reachedAt, signed);
    p.threads.execute(p::accept);
    log.info("egress proxy listening on {}", s.getLocalSocketAddress());
    return p;
  }

  /** The port it listens on. */
  public int port() {
    return server.getLocalPort();
  }

  /** Admits {@code client}'s connections from now on; returns its credentials' secret. */
  public String admit(Client client) {
    byte[] b = new byte[18];
    random.nextBytes(b);
    String token = HexFormat.of().formatHex(b);
    clients.put(token, client);
    return token;
  }

  /** Refuses the credentials {@code token} from now on (connections open stay open). */
  public void revoke(String token) {
    clients.remove(token);
  }

  /** The proxy URL a UDF is given: its credentials and this proxy's address as {@code host}. */
  public String url(String host, String token) {
    return proxyUrl(host + ":" + port(), token);
  }

  /** The URL of a proxy at {@code hostPort} with the credentials {@code token}. */
  public static String proxyUrl(String hostPort, String token) {
    return "http://" + USER + ":" + token + "@" + hostPort;
  }

  /**
   * The variables ({@code KEY=value}) that send a UDF's HTTP(S) through the proxy at {@code url}:
   * what {@code requests}, {@code urllib}, {@code boto3} and {@code curl} read (both spellings;
   * loopback stays direct).
   */
  public static List<String> environment(String url) {
    List<String> env = new ArrayList<>();
    for (String name : List.of("HTTP_PROXY", "HTTPS_PROXY")) {
      env.add(name + "=" + url);
      env.add(name.toLowerCase(Locale.ROOT) + "=" + url);
    }
    env.add("NO_PROXY=localhost,127.0.0.1,::1");
    env.add("no_proxy=localhost,127.0.0.1,::1");
    return env;
  }

  /** The workers whose traffic went through the proxy so far. */
  public List<Worker> workers() {
    return List.copyOf(traffic.keySet());
  }

  /** The bytes the tenant's worker sent and received through the proxy so far. */
  public Traffic traffic(String tenant, String worker) {
    Counters c = traffic.get(new Worker(tenant, worker));
    return c == null ? new Traffic(0, 0) : new Traffic(c.sent.sum(), c.received.sum());
  }

  private void accept() {
    while (!server.isClosed()) {
      try {
        Socket s = server.accept();
        if (!reachedAt.test(s.getLocalAddress())) {
          log.debug("egress proxy: refused a connection to {}", s.getLocalSocketAddress());
          s.close();
          continue;
        }
        threads.execute(() -> serve(s));
      } catch (IOException e) {
        if (!server.isClosed()) {
          log.warn("egress proxy: accepting a connection failed: {}", e.toString());
        }
      }
    }
  }

  private void serve(Socket socket) {
    try (socket) {
      socket.setSoTimeout(HEAD_TIMEOUT_MS);
      // Each side's writes go out at once: a relay that waits to fill packets adds delayed-ACK
      // pauses (tens of ms) to every small exchange, a TLS handshake's above all.
      socket.setTcpNoDelay(true);
      InputStream in = new BufferedInputStream(socket.getInputStream());
      OutputStream out = socket.getOutputStream();
      Head head = Head.read(in);
      if (head == null) {
        return;
      }
      Client client = authenticate(head);
      if (client == null) {
        ProxyWire.respond(
            out,
            407,
            "Proxy Authentication Required",
            "Proxy-Authenticate: Basic realm=\"kiln-egress\"\r\n",
            "kiln egress: this proxy serves UDF sandboxes only, with the credentials Kiln gave them");
        return;
      }
      if (head.method().equals("CONNECT")) {
        tunnel(socket, in, out, head, client);
      } else {
        forward(socket, in, out, head, client);
      }
    } catch (IOException e) {
      log.debug("egress proxy: a connection ended: {}", e.toString());
    }
  }

  private Client authenticate(Head head) {
    String auth = head.header("proxy-authorization");
    if (auth == null || !auth.regionMatches(true, 0, "Basic ", 0, 6)) {
      return null;
    }
    String decoded;
    try {
      decoded =
          new String(Base64.getDecoder().decode(auth.substring(6).strip()), StandardCharsets.UTF_8);
    } catch (IllegalArgumentException e) {
      return null;
    }
    int colon = decoded.indexOf(':');
    if (colon < 0) {
      return null;
    }
    String secret = decoded.substring(colon + 1);
    Client admitted = clients.get(secret);
    if (admitted != null || signed == null) {
      return admitted;
    }
    return signed.verify(secret).orElse(null);
  }

  /** {@code CONNECT host:port}: checked, connected, then the TLS ClientHello checked too. */
  private void tunnel(Socket socket, InputStream in, OutputStream out, Head head, Client client)
      throws IOException {
    HostPort target;
    try {
      target = HostPort.parse(head.target());
    } catch (IllegalArgumentException e) {
      ProxyWire.respond(
          out, 400, "Bad Request", "", "kiln egress: CONNECT needs host:port: " + head.target());
      return;
    }
    // As the allow-list sees names and the resolver is asked: lower case, IDN names in ASCII.
    String name = EgressRule.normalise(target.host());
    Socket upstream = open(out, client, target, name);
    if (upstream == null) {
      return;
    }
    try (upstream) {
      out.write("HTTP/1.1 200 Connection established\r\n\r\n".getBytes(StandardCharsets.US_ASCII));
      out.flush();
      // The first record the client sends: a TLS ClientHello must name the host asked for.
      byte[] first = ProxyWire.firstRecord(in);
      if (first.length > 0 && (first[0] & 0xff) == ClientHello.HANDSHAKE) {
        Optional<String> sni = ClientHello.serverName(first);
        if (sni.isPresent() && !EgressRule.normalise(sni.get()).equals(name)) {
          deny(
              client,
              target,
              "the TLS handshake names "
                  + sni.get()
                  + ", not "
                  + target.host()
                  + " which the tunnel was opened to");
          return;
        }
      }
      Counters c = counters(client);
      upstream.getOutputStream().write(first);
      c.sent.add(first.length);
      relay(socket, in, upstream, c);
    }
  }

  /** A plain-HTTP request in absolute form: checked, then sent on in origin form. */
  private void forward(Socket socket, InputStream in, OutputStream out, Head head, Client client)
      throws IOException {
    URI uri;
    try {
      uri = new URI(head.target());
    } catch (URISyntaxException e) {
      uri = null;
    }
    if (uri == null || !"http".equalsIgnoreCase(uri.getScheme()) || uri.getHost() == null) {
      ProxyWire.respond(
          out,
          400,
          "Bad Request",
          "",
          "kiln egress: a proxy request names an http:// URL (HTTPS goes through CONNECT): "
              + head.target());
      return;
    }
    HostPort target = new HostPort(uri.getHost(), uri.getPort() < 0 ? 80 : uri.getPort());
    String name = EgressRule.normalise(target.host());
    String host = head.header("host");
    if (host != null && !EgressRule.normalise(hostOf(host)).equals(name)) {
      // A server behind a shared address would answer for the name in Host, not the one checked.
      deny(
          client,
          target,
          "the request's Host header names "
              + host
              + ", not "
              + target.host()
              + " which it is sent to",
          out);
      return;
    }
    Socket upstream = open(out, client, target, name);
    if (upstream == null) {
      return;
    }
    try (upstream) {
      StringBuilder h = new StringBuilder();
      String path = uri.getRawPath() == null || uri.getRawPath().isEmpty() ? "/" : uri.getRawPath();
      if (uri.getRawQuery() != null) {
        path += "?" + uri.getRawQuery();
      }
      h.append(head.method()).append(' ').append(path).append(' ').append(head.version());
      h.append("\r\n");
      for (String[] kv : head.headers()) {
        String field = kv[0].toLowerCase(Locale.ROOT);
        if (field.equals("proxy-authorization")
            || field.equals("proxy-connection")
            || field.equals("connection")
            || field.equals("keep-alive")) {
          continue;
        }
        h.append(kv[0]).append(": ").append(kv[1]).append("\r\n");
      }
      // One request per connection: the next one (maybe for another host) is checked anew.
      h.append("Connection: close\r\n\r\n");
      byte[] bytes = h.toString().getBytes(StandardCharsets.ISO_8859_1);
      Counters c = counters(client);
      upstream.getOutputStream().write(bytes);
      c.sent.add(bytes.length);
      relay(socket, in, upstream, c);
    }
  }

  /** The host of a {@code Host} header's {@code host[:port]} ({@code [v6]:port} too). */
  private static String hostOf(String hostHeader) {
    String h = hostHeader.strip();
    if (h.startsWith("[")) {
      int close = h.indexOf(']');
      return close < 0 ? h : h.substring(1, close);
    }
    int colon = h.lastIndexOf(':');
    return colon < 0 || h.indexOf(':') != colon ? h : h.substring(0, colon);
  }

  /**
   * The target ({@code name}: its host {@link EgressRule#normalise normalised}) checked against the
   * client's allow-list and the deny list, and connected to; null (the client answered) when
   * refused or unreachable.
   */
  private Socket open(OutputStream out, Client client, HostPort target, String name)
      throws IOException {
    if (client.policy().allowingNormal(name, target.port()).isEmpty()) {
      deny(
          client,
          target,
          target
              + " is not in the egress allow-list of "
              + (client.policyFile() == null ? "worker " : "UDF ")
              + client.worker()
              + "; "
              + client.howToAllow(target.host()),
          out);
      return null;
    }
    List<InetAddress> addresses;
    try {
      addresses = resolver.resolve(name);
    } catch (UnknownHostException e) {
      ProxyWire.respond(
          out, 502, "Bad Gateway", "", "kiln egress: cannot resolve " + target.host());
      return null;
    }
    InetAddress chosen = null;
    String refused = null;
    for (InetAddress a : addresses) {
      Optional<DenyList.Range> r = deny.denying(a);
      if (r.isEmpty()) {
        chosen = a;
        break;
      }
      refused = a.getHostAddress() + " (in " + r.get() + ")";
    }
    if (chosen == null) {
      deny(
          client,
          target,
          target.host()
              + " resolves to "
              + refused
              + ", which the operator's --egress-deny refuses whatever the allow-list says",
          out);
      return null;
    }
    Socket s = new Socket();
    try {
      s.setTcpNoDelay(true);
      s.connect(new InetSocketAddress(chosen, target.port()), CONNECT_TIMEOUT_MS);
      return s;
    } catch (IOException e) {
      s.close();
      ProxyWire.respond(
          out,
          502,
          "Bad Gateway",
          "",
          "kiln egress: cannot connect to "
              + target
              + " ("
              + chosen.getHostAddress()
              + "): "
              + e.getMessage());
      return null;
    }
  }

  private void deny(Client client, HostPort target, String reason, OutputStream out)
      throws IOException {
    deny(client, target, reason);
    ProxyWire.respond(out, 403, "kiln egress: " + reason, "", "kiln egress: " + reason);
  }

  private void deny(Client client, HostPort target, String reason) {
    log.info(
        "egress denied: tenant={} worker={} udf={} {}: {}",
        client.tenant(),
        client.worker(),
        client.udf(),
        target,
        reason);
    try {
      denials.accept(new Denial(client, target.host(), target.port(), reason));
    } catch (RuntimeException e) {
      log.warn("egress proxy: a denial listener failed: {}", e.toString());
    }
  }

  private Counters counters(Client client) {
    return traffic.computeIfAbsent(
        new Worker(client.tenant(), client.worker()), k -> new Counters());
  }

  /** Copies both ways until both ends close, counting bytes. */
  private void relay(Socket client, InputStream clientIn, Socket upstream, Counters c)
      throws IOException {
    client.setSoTimeout(0);
    var up =
        threads.submit(
            () -> {
              copy(clientIn, upstream.getOutputStream(), c.sent);
              shutdownOutput(upstream);
              return null;
            });
    try {
      copy(upstream.getInputStream(), client.getOutputStream(), c.received);
      shutdownOutput(client);
      up.get();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    } catch (java.util.concurrent.ExecutionException e) {
      log.debug("egress proxy: a tunnel ended: {}", e.getCause().toString());
    }
  }

  private static void copy(InputStream in, OutputStream out, LongAdder count) throws IOException {
    byte[] buf = new byte[64 << 10];
    try {
      for (int n = in.read(buf); n >= 0; n = in.read(buf)) {
        out.write(buf, 0, n);
        out.flush();
        count.add(n);
      }
    } catch (SocketException e) {
      // the other side closed
    }
  }

  private static void shutdownOutput(Socket s) {
    try {
      s.shutdownOutput();
    } catch (IOException e) {
      // closed already
    }
  }

  @Override
  public void close() {
    try {
      server.close();
    } catch (IOException e) {
      // closing
    }
    threads.shutdownNow();
  }
}
