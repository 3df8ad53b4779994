package dev.kiln.egress;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The proxy's side of the wire: a client's request head and its target, the plain answers the proxy
 * itself gives (403, 407, 502), and a tunnel's first TLS record. No decisions: those are {@link
 * EgressProxy}'s.
 */
final class ProxyWire {
  private ProxyWire() {}

  /** The client's first TLS record (or whatever it sent first, up to one read). */
  static byte[] firstRecord(InputStream in) throws IOException {
    byte[] header = in.readNBytes(5);
    if (header.length < 5 || (header[0] & 0xff) != ClientHello.HANDSHAKE) {
      return header;
    }
    int length = ((header[3] & 0xff) << 8) | (header[4] & 0xff);
    byte[] body = in.readNBytes(Math.min(length, 1 << 14));
    byte[] all = new byte[5 + body.length];
    System.arraycopy(header, 0, all, 0, 5);
    System.arraycopy(body, 0, all, 5, body.length);
    return all;
  }

  static void respond(OutputStream out, int code, String reason, String headers, String body)
      throws IOException {
    String phrase = reason.replaceAll("[\\r\\n]", " ");
    byte[] b = (body + "\n").getBytes(StandardCharsets.UTF_8);
    String head =
        "HTTP/1.1 "
            + code
            + " "
            + phrase
            + "\r\n"
            + headers
            + "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "
            + b.length
            + "\r\nConnection: close\r\n\r\n";
    out.write(head.getBytes(StandardCharsets.UTF_8));
    out.write(b);
    out.flush();
  }

  /** A request's head: its line and headers, in order. */
  record Head(String method, String target, String version, List<String[]> headers) {
    String header(String name) {
      for (String[] kv : headers) {
        if (kv[0].equalsIgnoreCase(name)) {
          return kv[1];
        }
      }
      return null;
    }

    /** The head {@code in} starts with; null at the end of the stream. */
    static Head read(InputStream in) throws IOException {
      List<String> lines = new ArrayList<>();
      StringBuilder line = new StringBuilder();
      int total = 0;
      while (true) {
        int b = in.read();
        if (b < 0) {
          return null;
        }
        if (++total > EgressProxy.MAX_HEAD) {
          throw new IOException("a request head over " + EgressProxy.MAX_HEAD + " bytes");
        }
        if (b == '\n') {
          int end = line.length();
          if (end > 0 && line.charAt(end - 1) == '\r') {
            line.setLength(end - 1);
          }
          if (line.isEmpty()) {
            break;
          }
          lines.add(line.toString());
          line.setLength(0);
        } else {
          line.append((char) b);
        }
      }
      if (lines.isEmpty()) {
        return null;
      }
      String[] first = lines.getFirst().split(" ");
      if (first.length != 3) {
        throw new IOException("not an HTTP request line: " + lines.getFirst());
      }
      List<String[]> headers = new ArrayList<>();
      for (String l : lines.subList(1, lines.size())) {
        int colon = l.indexOf(':');
        if (colon > 0) {
          headers.add(new String[] {l.substring(0, colon).strip(), l.substring(colon + 1).strip()});
        }
      }
      return new Head(first[0].toUpperCase(Locale.ROOT), first[1], first[2], headers);
    }
  }

  /** A connection's target. */
  record HostPort(String host, int port) {
    /** {@code host:port} or {@code [v6]:port}, as a {@code CONNECT} names it. */
    static HostPort parse(String s) {
      String host;
      String port;
      if (s.startsWith("[")) {
        int close = s.indexOf(']');
        if (close < 0 || s.length() < close + 2 || s.charAt(close + 1) != ':') {
          throw new IllegalArgumentException(s);
        }
        host = s.substring(1, close);
        port = s.substring(close + 2);
      } else {
        int colon = s.lastIndexOf(':');
        if (colon < 0) {
          throw new IllegalArgumentException(s);
        }
        host = s.substring(0, colon);
        port = s.substring(colon + 1);
      }
      int p = Integer.parseInt(port);
      if (host.isEmpty() || p < 1 || p > 65535) {
        throw new IllegalArgumentException(s);
      }
      return new HostPort(host, p);
    }

    @Override
    public String toString() {
      return (host.contains(":") ? "[" + host + "]" : host) + ":" + port;
    }
  }
}
