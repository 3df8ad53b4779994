package dev.kiln.worker;

import java.io.BufferedReader;
import java.io.FilterInputStream;
import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;

/**
 * Runners over TCP, the runner pool's second transport (a sandbox pod's runners): each launch opens
 * a connection to a runner listener ({@link RunnerFiles#listenCommand}), which forks a runner for
 * it, and the frames go over the connection as they go over a local runner's stdin and stdout.
 *
 * <p>What a connection cannot carry: the UDF's own output goes to the listener's log (the pod's),
 * not to {@link RunnerProcess#stderr()}, so errors quote no output; the runner's exit status is not
 * known, only that its connection ended; and the per-launch variables are the pod's to set (its
 * environment and limits), so they are not sent.
 */
public final class TcpRunnerLauncher implements RunnerLauncher {
  /** What a runner listener prints once it listens, before {@code HOST:PORT} (kiln_listen.py). */
  private static final String LISTENING = "kiln-runner listening on ";

  private final InetSocketAddress address;
  private final Duration connectTimeout;

  /**
   * @param address where the runner listener listens
   * @param connectTimeout how long a connection may take to open
   */
  public TcpRunnerLauncher(InetSocketAddress address, Duration connectTimeout) {
    this.address = Objects.requireNonNull(address, "address");
    this.connectTimeout = Objects.requireNonNull(connectTimeout, "connectTimeout");
  }

  /**
   * Where a runner listener started by {@link RunnerFiles#listenCommand} listens: read from the
   * first line of its stdout ({@code kiln-runner listening on HOST:PORT}).
   *
   * @throws IOException when the listener ended or said something else first
   */
  public static InetSocketAddress listening(Process listener) throws IOException {
    String line =
        new BufferedReader(new InputStreamReader(listener.getInputStream(), StandardCharsets.UTF_8))
            .readLine();
    if (line == null || !line.startsWith(LISTENING)) {
      throw new IOException("the runner listener said " + line + " instead of where it listens");
    }
    String where = line.substring(LISTENING.length());
    int colon = where.lastIndexOf(':');
    return new InetSocketAddress(
        where.substring(0, colon), Integer.parseInt(where.substring(colon + 1)));
  }

  /** {@code HOST:PORT}, as the runner listener was given it. */
  private String where() {
    return address.getHostString() + ":" + address.getPort();
  }

  @Override
  public RunnerProcess launch(List<String> env) throws IOException {
    Socket socket = new Socket();
    try {
      socket.setTcpNoDelay(true);
      // A 65,536-row batch is about a MiB: let it cross in few reads and writes.
      socket.setSendBufferSize(1 << 20);
      socket.setReceiveBufferSize(1 << 20);
      socket.connect(address, (int) connectTimeout.toMillis());
    } catch (IOException e) {
      socket.close();
      throw new IOException(
          "cannot reach the UDF's runners at " + where() + " (" + e.getMessage() + ")", e);
    }
    return new Connection(socket, where());
  }

  /** One runner, as the connection to it. */
  private static final class Connection implements RunnerProcess {
    private final Socket socket;
    private final InputStream in;
    private final OutputStream out;
    private final CompletableFuture<Integer> exited = new CompletableFuture<>();
    private final String address;

    Connection(Socket socket, String address) throws IOException {
      this.socket = socket;
      this.address = address;
      this.out =
          new FilterOutputStream(socket.getOutputStream()) {
            @Override
            public void write(byte[] b, int off, int len) throws IOException {
              out.write(b, off, len);
            }

            /**
             * Closing stdin asks a runner to exit once idle: the runner reads the end of its input
             * and exits. Only this direction closes, so an answer under way still arrives; the
             * worker waits for nothing more from this runner.
             */
            @Override
            public void close() throws IOException {
              if (!socket.isClosed()) {
                socket.shutdownOutput();
              }
              exited.complete(0);
            }
          };
      this.in =
          new FilterInputStream(socket.getInputStream()) {
            @Override
            public int read() throws IOException {
              try {
                return ended(super.read());
              } catch (IOException e) {
                end();
                throw e;
              }
            }

            @Override
            public int read(byte[] b, int off, int len) throws IOException {
              try {
                return ended(super.read(b, off, len));
              } catch (IOException e) {
                end();
                throw e;
              }
            }
          };
    }

    /** The connection's end is the runner's: it ended, or was killed. */
    private int ended(int n) {
      if (n < 0) {
        end();
      }
      return n;
    }

    private void end() {
      if (!exited.isDone()) {
        exited.completeExceptionally(
            new IOException("the connection to the runner at " + address + " ended"));
      }
      try {
        socket.close();
      } catch (IOException e) {
        // closing what already ended
      }
    }

    @Override
    public OutputStream stdin() {
      return out;
    }

    @Override
    public InputStream stdout() {
      return in;
    }

    @Override
    public InputStream stderr() {
      return InputStream.nullInputStream();
    }

    @Override
    public boolean isAlive() {
      return !exited.isDone() && !socket.isClosed();
    }

    @Override
    public CompletableFuture<Integer> exited() {
      return exited;
    }

    @Override
    public void kill() {
      end();
    }
  }
}
