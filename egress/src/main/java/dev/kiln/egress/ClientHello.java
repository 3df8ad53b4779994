package dev.kiln.egress;

import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Optional;

/**
 * The server name (SNI) a TLS ClientHello asks for, read from the first TLS record a client sends,
 * without decrypting anything (the ClientHello is in the clear).
 */
final class ClientHello {
  /** A TLS record: content type 22 (handshake), then version and a two-byte length. */
  static final int HANDSHAKE = 22;

  private ClientHello() {}

  /** Moves past {@code n} bytes (a length read first, then skipped: never in one expression). */
  private static void skip(ByteBuffer b, int n) {
    b.position(b.position() + n);
  }

  /**
   * The SNI host name in {@code record} (one whole TLS record, header included); empty when it is
   * not a ClientHello or names no server.
   */
  static Optional<String> serverName(byte[] record) {
    try {
      ByteBuffer b = ByteBuffer.wrap(record);
      if ((b.get() & 0xff) != HANDSHAKE) {
        return Optional.empty();
      }
      b.getShort(); // record version
      int length = b.getShort() & 0xffff;
      b.limit(Math.min(b.limit(), 5 + length));
      if (b.get() != 1) { // ClientHello
        return Optional.empty();
      }
      b.position(b.position() + 3 + 2 + 32); // handshake length, client version, random
      skip(b, b.get() & 0xff); // session id
      skip(b, b.getShort() & 0xffff); // cipher suites
      skip(b, b.get() & 0xff); // compression methods
      if (!b.hasRemaining()) {
        return Optional.empty();
      }
      int extensions = b.getShort() & 0xffff;
      int end = b.position() + extensions;
      while (b.position() + 4 <= end) {
        int type = b.getShort() & 0xffff;
        int len = b.getShort() & 0xffff;
        int next = b.position() + len; // after both reads: the position is past them
        if (type == 0) { // server_name
          b.getShort(); // list length
          while (b.position() + 3 <= next) {
            int nameType = b.get() & 0xff;
            int nameLen = b.getShort() & 0xffff;
            byte[] name = new byte[nameLen];
            b.get(name);
            if (nameType == 0) {
              return Optional.of(new String(name, StandardCharsets.US_ASCII));
            }
          }
          return Optional.empty();
        }
        b.position(next);
      }
      return Optional.empty();
    } catch (BufferUnderflowException | IllegalArgumentException e) {
      return Optional.empty();
    }
  }
}
