package dev.kiln.egress;

import java.net.IDN;
import java.util.Locale;
import java.util.regex.Pattern;

/**
 * One entry of a worker's {@code egress} allow-list: a host name ({@code api.example.com}), a
 * wildcard over one or more leading labels ({@code *.amazonaws.com}: {@code s3.amazonaws.com} and
 * {@code s3.us-east-1.amazonaws.com}, not {@code amazonaws.com} itself), or an IP address ({@code
 * 10.1.2.3}, {@code [2001:db8::1]}), each with an optional port ({@code :443}); without one, any
 * port.
 *
 * @param host the name (lower case, ASCII) or address, without the {@code *.} of a wildcard
 * @param wildcard whether it stands for names under {@code host}
 * @param address whether {@code host} is an IP address
 * @param port the only port allowed, or 0 for any
 */
public record EgressRule(String host, boolean wildcard, boolean address, int port) {
  private static final Pattern LABEL = Pattern.compile("[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?");
  private static final Pattern IPV4 =
      Pattern.compile(
          "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)(\\.(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)){3}");

  /**
   * The rule {@code text} says.
   *
   * @throws IllegalArgumentException saying what is wrong with it
   */
  public static EgressRule parse(String text) {
    String t = text.strip();
    if (t.isEmpty()) {
      throw new IllegalArgumentException("an empty pattern");
    }
    int port = 0;
    String host = t;
    if (t.startsWith("[")) {
      int close = t.indexOf(']');
      if (close < 0) {
        throw new IllegalArgumentException("an IPv6 address without its closing ']'");
      }
      host = t.substring(1, close);
      String rest = t.substring(close + 1);
      if (!rest.isEmpty()) {
        if (!rest.startsWith(":")) {
          throw new IllegalArgumentException("text after the IPv6 address that is not ':PORT'");
        }
        port = port(rest.substring(1));
      }
      if (!host.contains(":") || !host.matches("[0-9A-Fa-f:.]+")) {
        throw new IllegalArgumentException("not an IPv6 address: " + host);
      }
      return new EgressRule(host.toLowerCase(Locale.ROOT), false, true, port);
    }
    int colon = t.lastIndexOf(':');
    if (colon >= 0) {
      if (t.indexOf(':') != colon) {
        throw new IllegalArgumentException("an IPv6 address goes in brackets: [" + t + "]");
      }
      host = t.substring(0, colon);
      port = port(t.substring(colon + 1));
    }
    if (IPV4.matcher(host).matches()) {
      return new EgressRule(host, false, true, port);
    }
    boolean wildcard = host.startsWith("*.");
    String name = wildcard ? host.substring(2) : host;
    if (name.contains("*")) {
      throw new IllegalArgumentException(
          "'*' stands only for whole leading labels, as in *.example.com");
    }
    String ascii;
    try {
      ascii = IDN.toASCII(name, IDN.USE_STD3_ASCII_RULES).toLowerCase(Locale.ROOT);
    } catch (IllegalArgumentException e) {
      throw new IllegalArgumentException("not a host name: " + name);
    }
    if (ascii.endsWith(".")) {
      ascii = ascii.substring(0, ascii.length() - 1);
    }
    String[] labels = ascii.split("\\.", -1);
    for (String l : labels) {
      if (!LABEL.matcher(l).matches()) {
        throw new IllegalArgumentException("not a host name: " + name);
      }
    }
    if (wildcard && labels.length < 2) {
      throw new IllegalArgumentException(
          "a wildcard needs a domain of two labels or more (*.example.com), not *." + name);
    }
    if (ascii.length() > 253) {
      throw new IllegalArgumentException("a host name longer than 253 characters");
    }
    return new EgressRule(ascii, wildcard, false, port);
  }

  private static int port(String s) {
    try {
      int p = Integer.parseInt(s);
      if (p >= 1 && p <= 65535) {
        return p;
      }
    } catch (NumberFormatException e) {
      // below
    }
    throw new IllegalArgumentException("not a port (1 to 65535): '" + s + "'");
  }

  /** Whether a connection to {@code target} (a name or an address, as asked) and port matches. */
  public boolean matches(String target, int targetPort) {
    return matchesNormal(normalise(target), targetPort);
  }

  /** As {@link #matches}, for a target already {@link #normalise normalised}. */
  boolean matchesNormal(String t, int targetPort) {
    if (port != 0 && port != targetPort) {
      return false;
    }
    if (address) {
      return host.equals(t);
    }
    return wildcard ? t.endsWith("." + host) : host.equals(t);
  }

  /** A target as rules compare it: lower case, ASCII, no brackets or trailing dot. */
  static String normalise(String target) {
    String t = target.toLowerCase(Locale.ROOT);
    if (t.startsWith("[") && t.endsWith("]")) {
      t = t.substring(1, t.length() - 1);
    }
    if (t.endsWith(".")) {
      t = t.substring(0, t.length() - 1);
    }
    try {
      return t.contains(":") ? t : IDN.toASCII(t).toLowerCase(Locale.ROOT);
    } catch (IllegalArgumentException e) {
      return t;
    }
  }

  @Override
  public String toString() {
    String h = address && host.contains(":") ? "[" + host + "]" : (wildcard ? "*." : "") + host;
    return port == 0 ? h : h + ":" + port;
  }
}
