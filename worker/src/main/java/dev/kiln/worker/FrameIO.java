package dev.kiln.worker;

import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.arrow.memory.ArrowBuf;

/**
 * The runner protocol's frames (PROTOCOL.md, "Frames"): the frame types, the header, reading one
 * frame from a runner's stdout, and building and writing one for its stdin. Everything on the wire
 * is little-endian; the byte-array views here are what the encoder and the decoder read and write
 * with.
 *
 * <pre>
 * frame := length:u32  type:u8  payload[length]      length counts the payload only
 * </pre>
 */
final class FrameIO {

  static final int READY = 0x01;
  static final int LOAD_ERROR = 0x02;
  static final int WAITING = 0x03;
  static final int LOAD = 0x04;
  static final int BATCH = 0x10;
  static final int RESULT = 0x11;
  static final int BATCH_ERROR = 0x12;

  static final int HEADER_BYTES = 5;

  /** Frames must fit a Java array. */
  static final long MAX_PAYLOAD = Integer.MAX_VALUE - 64;

  static final VarHandle SHORT =
      MethodHandles.byteArrayViewVarHandle(short[].class, ByteOrder.LITTLE_ENDIAN);
  static final VarHandle INT =
      MethodHandles.byteArrayViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
  static final VarHandle LONG =
      MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

  private FrameIO() {}

  /** One frame as read from the runner. */
  record Frame(int type, byte[] payload) {}

  /** A frame to send: the first {@code length} bytes of {@code bytes}, header included. */
  record Encoded(byte[] bytes, int length) {}

  /**
   * Arrays of frames kept for the next frames of their kind. A 65,536-row batch is a MiB, its
   * result half that, and a new array for each was most of what the worker allocated under
   * Databend's load (the fast-client benchmark, 256 calls in flight), paid again in garbage
   * collection. An array is given back only once nothing reads it again; one not given back is
   * simply collected.
   */
  static final class Spares {
    /** At most this many bytes are kept, whatever the sizes (a batch of long strings is large). */
    private static final long MAX_KEPT_BYTES = 64L << 20;

    private final ArrayBlockingQueue<byte[]> arrays = new ArrayBlockingQueue<>(32);
    private final AtomicLong kept = new AtomicLong();
    private final boolean exact;

    /**
     * @param exact whether an array must have exactly the size asked (a result's payload is its
     *     whole array) or may be larger (a batch frame says its own length)
     */
    Spares(boolean exact) {
      this.exact = exact;
    }

    /** An array of {@code size} bytes (or more, unless exact): a spare that fits, else new. */
    byte[] take(int size) {
      byte[] spare = arrays.poll();
      if (spare == null) {
        return new byte[size];
      }
      kept.addAndGet(-spare.length);
      // One much too large would keep memory that a smaller batch does not need.
      boolean fits =
          exact ? spare.length == size : spare.length >= size && spare.length / 4 <= size;
      return fits ? spare : new byte[size];
    }

    /** Keeps an array for a later frame; only one nothing reads again, as it is overwritten. */
    void give(byte[] array) {
      if (kept.addAndGet(array.length) > MAX_KEPT_BYTES || !arrays.offer(array)) {
        kept.addAndGet(-array.length);
      }
    }

    /** Forgets the spare arrays (tests start from none). */
    void clear() {
      for (byte[] a = arrays.poll(); a != null; a = arrays.poll()) {
        kept.addAndGet(-a.length);
      }
    }
  }

  /** Arrays of BATCH frames, given back once their batch was answered. */
  static final Spares BATCH_ARRAYS = new Spares(false);

  /** Arrays of RESULT payloads, given back once decoded. */
  static final Spares RESULT_ARRAYS = new Spares(true);

  /** The runner sent bytes that do not follow the protocol. */
  static final class MalformedFrameException extends IOException {
    MalformedFrameException(String message) {
      super(message);
    }
  }

  /** A frame outgrew what one frame can carry ({@link #MAX_PAYLOAD}). */
  static final class FrameTooLarge extends RuntimeException {
    FrameTooLarge() {
      super(null, null, false, false);
    }
  }

  /** Reads one frame; null at a clean end of stream (before the first header byte). */
  static Frame readFrame(InputStream in) throws IOException {
    byte[] header = new byte[HEADER_BYTES];
    int first = in.read();
    if (first < 0) {
      return null;
    }
    header[0] = (byte) first;
    readFully(in, header, 1, HEADER_BYTES - 1);
    long length = Integer.toUnsignedLong((int) INT.get(header, 0));
    int type = header[4] & 0xff;
    if (length > MAX_PAYLOAD) {
      throw new MalformedFrameException("frame of type " + type + " claims " + length + " bytes");
    }
    byte[] payload = type == RESULT ? RESULT_ARRAYS.take((int) length) : new byte[(int) length];
    readFully(in, payload, 0, payload.length);
    return new Frame(type, payload);
  }

  private static void readFully(InputStream in, byte[] b, int off, int len) throws IOException {
    int n = in.readNBytes(b, off, len);
    if (n < len) {
      throw new EOFException("the stream ended inside a frame (" + n + " of " + len + " bytes)");
    }
  }

  /** Writes one whole frame and flushes it. */
  static void writeFrame(OutputStream out, Encoded frame) throws IOException {
    out.write(frame.bytes(), 0, frame.length());
    out.flush();
  }

  /**
   * A frame being built: a growable little-endian byte array that starts with the frame header (its
   * length patched by {@link #finish}) and is sent straight from where it was written.
   */
  static final class Sink {
    byte[] buf;
    int pos;

    /** Starts a frame of {@code type}; {@code estimate} is its likely size in bytes. */
    Sink(int type, long estimate) {
      buf = BATCH_ARRAYS.take((int) Math.min(Math.max(estimate, 64), MAX_PAYLOAD));
      u32(0).u8(type); // length patched by finish()
    }

    /** The finished frame, its header's length set. */
    Encoded finish() {
      INT.set(buf, 0, pos - HEADER_BYTES);
      return new Encoded(buf, pos);
    }

    void ensure(long more) {
      long need = pos + more;
      if (need <= buf.length) {
        return;
      }
      if (need > MAX_PAYLOAD + HEADER_BYTES) {
        throw new FrameTooLarge();
      }
      buf = Arrays.copyOf(buf, (int) Math.min(Math.max(need, 2L * buf.length), MAX_PAYLOAD + 64));
    }

    Sink u8(int v) {
      ensure(1);
      buf[pos++] = (byte) v;
      return this;
    }

    Sink u16(int v) {
      ensure(2);
      SHORT.set(buf, pos, (short) v);
      pos += 2;
      return this;
    }

    Sink u32(int v) {
      ensure(4);
      INT.set(buf, pos, v);
      pos += 4;
      return this;
    }

    void copy(ArrowBuf from, long at, long length) {
      ensure(length);
      from.getBytes(at, buf, pos, (int) length);
      pos += (int) length;
    }
  }
}
