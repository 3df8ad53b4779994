package dev.kiln.egress;

import java.io.IOException;
import java.net.InetAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * Names the egress proxy resolves from a file before asking DNS ({@code kiln serve --egress-hosts},
 * the {@code /etc/hosts} format: an address, then its names; {@code #} starts a comment): services
 * a cluster's DNS does not know, pinned addresses. Read once, when the server starts.
 */
public final class HostsFile {
  private HostsFile() {}

  /**
   * The system's resolver, after the names {@code file} lists when it is not null.
   *
   * @throws IOException when the file cannot be read, or a line's address is not an IP address
   */
  public static EgressProxy.Resolver resolver(Path file) throws IOException {
    return file == null ? EgressProxy.Resolver.SYSTEM : resolver(file, EgressProxy.Resolver.SYSTEM);
  }

  /**
   * A resolver that answers the names {@code file} lists from it and every other name with {@code
   * fallback}.
   *
   * @throws IOException when the file cannot be read, or a line's address is not an IP address
   */
  public static EgressProxy.Resolver resolver(Path file, EgressProxy.Resolver fallback)
      throws IOException {
    Map<String, List<InetAddress>> names = new HashMap<>();
    int n = 0;
    for (String raw : Files.readAllLines(file, StandardCharsets.UTF_8)) {
      n++;
      int hash = raw.indexOf('#');
      String[] fields = (hash >= 0 ? raw.substring(0, hash) : raw).trim().split("\\s+");
      if (fields.length < 2 || fields[0].isEmpty()) {
        continue;
      }
      if (!fields[0].matches("[0-9.]+|[0-9a-fA-F:.]*:[0-9a-fA-F:.]*")) {
        throw new IOException(
            file + " line " + n + ": '" + fields[0] + "' is not an IPv4 or IPv6 address");
      }
      // A literal address: getByName parses it without a lookup.
      InetAddress address = InetAddress.getByName(fields[0]);
      for (int i = 1; i < fields.length; i++) {
        names.computeIfAbsent(EgressRule.normalise(fields[i]), k -> new ArrayList<>()).add(address);
      }
    }
    Map<String, List<InetAddress>> table = Map.copyOf(names);
    return host -> {
      List<InetAddress> listed = table.get(EgressRule.normalise(host));
      return listed != null ? List.copyOf(listed) : fallback.resolve(host);
    };
  }
}
