package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.egress.DenyList;
import dev.kiln.egress.EgressProxy;
import dev.kiln.egress.HostsFile;
import dev.kiln.provisioner.PlaceSandbox;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.provisioner.SandboxNetwork;
import dev.kiln.provisioner.SandboxSpec;
import io.micrometer.core.instrument.MeterRegistry;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;

/**
 * Sandboxes of UDFs with an egress allow-list. Each gets a network of its own ({@link
 * SandboxNetwork}) whose one reachable address is the host end, where Kiln's {@link EgressProxy}
 * listens; its processes get the proxy's URL, with credentials of that sandbox's own, in {@code
 * HTTP_PROXY}/{@code HTTPS_PROXY}. Names resolve only through the proxy (the sandbox has no route
 * to a DNS server), which checks each connection against the UDF's list and the operator's deny
 * list. A sandbox's credentials are revoked and its network deleted when it stops. The proxy starts
 * with the first such sandbox, so a server whose UDFs have no egress opens no port for it.
 */
final class EgressSandboxes implements AutoCloseable {
  private final DenyList deny;
  private final EgressProxy.Resolver resolver;
  private final Consumer<EgressProxy.Denial> denials;
  private final MeterRegistry meters;
  private final AtomicInteger networks =
      new AtomicInteger(ThreadLocalRandom.current().nextInt(1 << 14));
  private EgressProxy proxy;
  private boolean closed;

  EgressSandboxes(
      DenyList deny,
      EgressProxy.Resolver resolver,
      MeterRegistry meters,
      Consumer<EgressProxy.Denial> denials) {
    this.deny = deny;
    this.resolver = resolver;
    this.meters = meters;
    this.denials = denials;
  }

  /**
   * As {@code --egress-deny} and {@code --egress-hosts} configure it, each refusal handed to {@code
   * denials}.
   *
   * @throws KilnException {@link ErrorCode#INVALID_CONFIGURATION} when the hosts file is unreadable
   *     or malformed
   */
  static EgressSandboxes of(
      KilnConfig config, MeterRegistry meters, Consumer<EgressProxy.Denial> denials)
      throws KilnException {
    EgressProxy.Resolver resolver;
    try {
      resolver = HostsFile.resolver(config.egressHosts());
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION, "egress-hosts: " + e.getMessage(), e);
    }
    return new EgressSandboxes(DenyList.parse(config.egressDeny()), resolver, meters, denials);
  }

  /**
   * Places {@code spec} on a network of its own whose traffic goes through the proxy as {@code
   * client}.
   *
   * @throws KilnException {@link ErrorCode#SANDBOX_UNAVAILABLE} when the network or the proxy
   *     cannot be made, or what placing the sandbox threw
   */
  Sandbox place(PlaceSandbox sandboxes, SandboxSpec spec, EgressProxy.Client client)
      throws KilnException, InterruptedException {
    EgressProxy p = proxy();
    SandboxNetwork network;
    try {
      network = SandboxNetwork.create(networks.getAndAdd(7));
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.SANDBOX_UNAVAILABLE,
          "cannot make a network for a sandbox with egress (" + e.getMessage() + ")",
          e);
    }
    String token = p.admit(client);
    EgressMetrics.count(meters, p, new EgressProxy.Worker(client.tenant(), client.worker()));
    Sandbox sandbox = null;
    try {
      String url = p.url(network.hostAddress().getHostAddress(), token);
      sandbox = sandboxes.place(spec.withEgress(EgressProxy.environment(url)).withNetwork(network));
      return sandbox;
    } finally {
      if (sandbox == null) {
        p.revoke(token);
        network.close();
      } else {
        sandbox
            .stopped()
            .whenComplete(
                (v, e) -> {
                  p.revoke(token);
                  network.close();
                });
      }
    }
  }

  private synchronized EgressProxy proxy() throws KilnException {
    if (closed) {
      throw new KilnException(ErrorCode.SHUTTING_DOWN, "Kiln is shutting down");
    }
    if (proxy == null) {
      try {
        // On every address, since each sandbox reaches it at its own network's host end; a
        // connection to any other address of this host is closed unanswered.
        proxy =
            EgressProxy.start(
                new InetSocketAddress(0),
                deny,
                resolver,
                denials,
                SandboxNetwork::isSandboxNetworkAddress,
                null);
      } catch (IOException e) {
        throw new KilnException(
            ErrorCode.SANDBOX_UNAVAILABLE, "cannot start the egress proxy: " + e.getMessage(), e);
      }
    }
    return proxy;
  }

  @Override
  public synchronized void close() {
    closed = true;
    if (proxy != null) {
      proxy.close();
    }
  }
}
