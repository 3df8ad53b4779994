package dev.kiln.egress;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.net.InetAddress;
import java.net.UnknownHostException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * The operator's {@code --egress-deny}: address ranges no UDF may reach whatever its allow-list
 * says, checked on the addresses a name resolves to (so a name that resolves to a private address
 * is refused too). The default covers cloud metadata endpoints, loopback, private and link-local
 * ranges, IPv4 and IPv6.
 */
public record DenyList(List<Range> ranges) {
  /** The ranges denied unless the operator says otherwise. */
  public static final List<String> DEFAULTS =
      List.of(
          "0.0.0.0/8",
          "10.0.0.0/8",
          "100.64.0.0/10",
          "127.0.0.0/8",
          "169.254.0.0/16",
          "172.16.0.0/12",
          "192.168.0.0/16",
          "::/128",
          "::1/128",
          "fc00::/7",
          "fe80::/10");

  /** One CIDR range. */
  public record Range(byte[] network, int bits, String text) {
    boolean contains(InetAddress a) {
      byte[] b = a.getAddress();
      if (b.length != network.length) {
        // An IPv4-mapped IPv6 address is compared as the IPv4 address it maps.
        if (b.length == 16 && network.length == 4 && isMapped(b)) {
          byte[] v4 = new byte[4];
          System.arraycopy(b, 12, v4, 0, 4);
          b = v4;
        } else {
          return false;
        }
      }
      // The prefix's whole bytes, then the rest of its last byte under a mask.
      int whole = bits / 8;
      for (int i = 0; i < whole; i++) {
        if (b[i] != network[i]) {
          return false;
        }
      }
      int rest = bits % 8;
      int mask = (0xff << (8 - rest)) & 0xff;
      return rest == 0 || (b[whole] & mask) == (network[whole] & mask);
    }

    private static boolean isMapped(byte[] b) {
      for (int i = 0; i < 10; i++) {
        if (b[i] != 0) {
          return false;
        }
      }
      return b[10] == (byte) 0xff && b[11] == (byte) 0xff;
    }

    @Override
    public String toString() {
      return text;
    }
  }

  public DenyList {
    ranges = List.copyOf(ranges);
  }

  /** The default ranges. */
  public static DenyList defaults() {
    try {
      return parse(DEFAULTS);
    } catch (KilnException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * The ranges a repeatable {@code --egress-deny CIDR[,CIDR...]} option names: {@link #DEFAULTS}
   * when it was not given, none for {@code none}.
   */
  public static List<String> cidrs(List<String> optionValues) {
    if (optionValues.isEmpty()) {
      return DEFAULTS;
    }
    List<String> out = new ArrayList<>();
    for (String value : optionValues) {
      for (String cidr : value.split(",")) {
        if (!cidr.isBlank() && !cidr.strip().equalsIgnoreCase("none")) {
          out.add(cidr.strip());
        }
      }
    }
    return out;
  }

  /**
   * The ranges {@code cidrs} names ({@code 169.254.169.254}, {@code 10.0.0.0/8}, {@code fc00::/7}).
   *
   * @throws KilnException {@link ErrorCode#INVALID_CONFIGURATION} naming every bad entry
   */
  public static DenyList parse(List<String> cidrs) throws KilnException {
    List<Range> out = new ArrayList<>();
    List<String> errors = new ArrayList<>();
    for (String c : cidrs) {
      String t = c.strip();
      if (t.isEmpty()) {
        continue;
      }
      try {
        out.add(range(t));
      } catch (IllegalArgumentException e) {
        errors.add("'" + t + "': " + e.getMessage());
      }
    }
    if (!errors.isEmpty()) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION,
          "--egress-deny: "
              + String.join("; ", errors)
              + ". Give addresses or CIDR ranges (169.254.169.254, 10.0.0.0/8, fc00::/7),"
              + " separated by commas");
    }
    return new DenyList(out);
  }

  private static Range range(String t) {
    int slash = t.indexOf('/');
    String addr = slash < 0 ? t : t.substring(0, slash);
    if (!addr.matches("[0-9A-Fa-f:.]+") || (!addr.contains(":") && !addr.contains("."))) {
      throw new IllegalArgumentException("not an IP address");
    }
    byte[] bytes;
    try {
      bytes = InetAddress.getByName(addr).getAddress(); // a literal: nothing is looked up
    } catch (UnknownHostException e) {
      throw new IllegalArgumentException("not an IP address");
    }
    int bits = bytes.length * 8;
    if (slash >= 0) {
      try {
        bits = Integer.parseInt(t.substring(slash + 1));
      } catch (NumberFormatException e) {
        throw new IllegalArgumentException("not a prefix length after '/'");
      }
      if (bits < 0 || bits > bytes.length * 8) {
        throw new IllegalArgumentException(
            "a prefix length of " + bits + " for an address of " + bytes.length * 8 + " bits");
      }
    }
    return new Range(bytes, bits, t);
  }

  /** The range that denies {@code address}, if any. */
  public Optional<Range> denying(InetAddress address) {
    return ranges.stream().filter(r -> r.contains(address)).findFirst();
  }
}
