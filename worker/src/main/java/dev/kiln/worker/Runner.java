package dev.kiln.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One runner process and the protocol over its pipes. A runner does one thing at a time (the pool
 * guarantees it); a watchdog kills the process when a deadline passes, which turns the blocked pipe
 * read into an end of stream that {@link #call} reports as a timeout.
 *
 * <p>Its stderr (the UDF's prints and tracebacks) is drained continuously on its own thread, so a
 * chatty UDF never blocks on a full pipe.
 */
final class Runner {

  private static final Logger log = LoggerFactory.getLogger(Runner.class);
  private static final ObjectMapper JSON = new ObjectMapper();

  /** Lines shown in an error message; the full tail is in {@link RunnerPool#recentOutput()}. */
  static final int EXCERPT_LINES = 20;

  /** The mark the runner writes on stderr after flushing the UDF's output (PROTOCOL.md). */
  static final String OUTPUT_SYNC = "\u001fkiln-sync";

  /** How long an error waits for the UDF's last output to arrive from the pipe. */
  static final Duration OUTPUT_SYNC_WAIT = Duration.ofMillis(500);

  private final int id;
  private final String handler;
  private final RunnerProcess process;
  private final OutputStream stdin;
  private final InputStream stdout;
  private final OutputTail tail;
  private final OutputTail poolTail;
  private final ScheduledExecutorService timer;
  private final CountDownLatch drained = new CountDownLatch(1);
  private final LinkedBlockingQueue<FrameIO.Encoded> outbox = new LinkedBlockingQueue<>();
  private Thread writer; // started by the first send(); only the owning slot thread sends
  private final Object syncLock = new Object();
  private long syncs; // guarded by syncLock: output sync marks seen on stderr
  private boolean outputEnded; // guarded by syncLock: stderr ended (or a runner has none)
  private volatile boolean expired;
  private volatile boolean closing;

  Runner(
      int id,
      String handler,
      RunnerProcess process,
      OutputTail poolTail,
      int tailLines,
      ScheduledExecutorService timer) {
    this.id = id;
    this.handler = handler;
    this.process = process;
    this.stdin = process.stdin();
    this.stdout = process.stdout();
    this.tail = new OutputTail(Math.max(tailLines, EXCERPT_LINES));
    this.poolTail = poolTail;
    this.timer = timer;
    Thread.ofPlatform()
        .daemon()
        .name("kiln-runner-output-" + handler + "-" + id)
        .start(() -> drain(process.stderr()));
  }

  int id() {
    return id;
  }

  boolean isAlive() {
    return process.isAlive();
  }

  /**
   * Waits for READY and returns its JSON; anything else (LOAD_ERROR, exit, silence) is a {@link
   * KilnException}.
   */
  JsonNode awaitReady(Duration timeout) throws KilnException, InterruptedException {
    long started = System.nanoTime();
    FrameIO.Frame frame = exchange(null, timeout, "starting");
    if (frame == null) {
      if (expired) {
        throw new KilnException(
            ErrorCode.SANDBOX_UNAVAILABLE,
            "the UDF process did not become ready within "
                + seconds(timeout)
                + " (its code or imports may block, or the sandbox is very slow); it was stopped"
                + lastOutput());
      }
      throw new KilnException(
          ErrorCode.UDF_LOAD_FAILED,
          "the UDF process " + exitDescription() + " before it was ready" + lastOutput());
    }
    switch (frame.type()) {
      case FrameIO.READY -> {
        JsonNode ready = json(frame, "READY");
        log.info(
            "UDF {} runner {} ready in {} ms (pid {}, Python {})",
            handler,
            id,
            TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started),
            ready.path("pid").asText("?"),
            ready.path("python").asText("?"));
        return ready;
      }
      case FrameIO.LOAD_ERROR -> {
        kill();
        throw new KilnException(
            ErrorCode.UDF_LOAD_FAILED,
            "the UDF code failed to load: " + describeLoadError(json(frame, "LOAD_ERROR")));
      }
      default -> {
        kill();
        throw protocolError("a frame of type " + frame.type() + " instead of READY");
      }
    }
  }

  /** What a runner reported for one batch. */
  record Reply(FrameIO.Frame frame, String output) {}

  /**
   * Sends one BATCH frame and returns the answer (RESULT or BATCH_ERROR). Throws when the process
   * dies, times out or breaks the protocol; the runner is then unusable.
   */
  Reply call(FrameIO.Encoded batchFrame, int rows, Duration timeout)
      throws KilnException, InterruptedException {
    send(batchFrame);
    return receive(rows, timeout);
  }

  /**
   * Queues a BATCH frame for the runner's stdin and returns at once: a writer thread sends it, so
   * the next batch can be on its way while the runner computes the current one. Frames are sent in
   * order; each is answered by one {@link #receive}, in the same order.
   */
  void send(FrameIO.Encoded batchFrame) throws InterruptedException {
    if (writer == null) {
      writer =
          Thread.ofPlatform()
              .daemon()
              .name("kiln-runner-input-" + handler + "-" + id)
              .start(this::writeFrames);
    }
    outbox.put(batchFrame);
  }

  /** Writes queued frames to stdin until it fails (the process is gone) or is closed. */
  private void writeFrames() {
    try {
      while (true) {
        FrameIO.Encoded frame = outbox.take();
        FrameIO.writeFrame(stdin, frame);
      }
    } catch (IOException e) {
      // A broken pipe: the process is gone, and the reader side says how.
      log.debug("UDF {} runner {}: writing a batch: {}", handler, id, e.toString());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Reads the answer (RESULT or BATCH_ERROR) to the oldest batch sent and not yet answered; the
   * batch timeout runs from now, which is when the runner starts on it. Throws when the process
   * dies, times out or breaks the protocol; the runner is then unusable.
   */
  Reply receive(int rows, Duration timeout) throws KilnException, InterruptedException {
    long syncBase = syncsSeen();
    FrameIO.Frame frame = exchange(null, timeout, "computing a batch");
    if (frame != null) {
      if (frame.type() == FrameIO.RESULT) {
        return new Reply(frame, "");
      }
      if (frame.type() != FrameIO.BATCH_ERROR) {
        kill();
        throw protocolError("a frame of type " + frame.type() + " instead of a result");
      }
      // The runner marks the end of its output before an error, so the message can quote it.
      awaitSync(syncBase, OUTPUT_SYNC_WAIT);
      String excerpt = tail.excerpt(EXCERPT_LINES);
      return new Reply(
          frame, excerpt.isEmpty() ? "" : ". Last output of the UDF process:" + excerpt);
    }
    if (closing) {
      throw new KilnException(
          ErrorCode.SHUTTING_DOWN,
          "the UDF was shut down while computing this batch; run the query again");
    }
    if (expired) {
      log.warn("UDF {} runner {}: batch of {} rows timed out after {}", handler, id, rows, timeout);
      throw new KilnException(
          ErrorCode.BATCH_TIMEOUT,
          "the UDF did not return within "
              + seconds(timeout)
              + " for a batch of "
              + rows
              + " rows; Kiln stopped its process and started a new one. Make the function faster,"
              + " or make Databend send smaller batches (external_server_request_batch_rows)"
              + lastOutput());
    }
    String status = exitDescription();
    log.warn("UDF {} runner {} died while computing a batch ({})", handler, id, status);
    throw new KilnException(
        ErrorCode.RUNNER_CRASHED,
        "the UDF process died while computing this batch ("
            + status
            + "); it was restarted, so the next call starts afresh"
            + lastOutput());
  }

  private long syncsSeen() {
    synchronized (syncLock) {
      return syncs;
    }
  }

  /** Waits until stderr has shown a sync mark after {@code base}, or the wait is over. */
  private void awaitSync(long base, Duration wait) throws InterruptedException {
    long deadline = System.nanoTime() + wait.toNanos();
    synchronized (syncLock) {
      // No mark comes once the output has ended (a runner over TCP has none here).
      while (syncs <= base && !outputEnded) {
        long left = deadline - System.nanoTime();
        if (left <= 0) {
          return;
        }
        TimeUnit.NANOSECONDS.timedWait(syncLock, left);
      }
    }
  }

  /** Writes {@code request} (if any) and reads one frame, under a watchdog; null at EOF. */
  private FrameIO.Frame exchange(FrameIO.Encoded request, Duration timeout, String doing)
      throws KilnException {
    ScheduledFuture<?> watchdog;
    try {
      watchdog = timer.schedule(this::expire, timeout.toNanos(), TimeUnit.NANOSECONDS);
    } catch (RejectedExecutionException e) {
      throw new KilnException(
          ErrorCode.SHUTTING_DOWN, "the UDF is shutting down; run the query again", e);
    }
    FrameIO.Frame frame;
    try {
      if (request != null) {
        FrameIO.writeFrame(stdin, request);
      }
      frame = FrameIO.readFrame(stdout);
    } catch (FrameIO.MalformedFrameException e) {
      kill();
      throw protocolError(e.getMessage() + " while " + doing);
    } catch (IOException e) {
      // A broken pipe or a closed stream: the process is gone; the caller says how.
      log.debug("UDF {} runner {}: stream ended while {}: {}", handler, id, doing, e.toString());
      frame = null;
    } finally {
      watchdog.cancel(false);
    }
    // The watchdog may have fired just as the answer arrived; the process is being killed then.
    return expired ? null : frame;
  }

  private void expire() {
    expired = true;
    process.kill();
  }

  /** Closes stdin, which asks the runner to exit once it is idle. */
  void closeInput() {
    closing = true;
    if (writer != null) {
      writer.interrupt();
    }
    try {
      stdin.close();
    } catch (IOException e) {
      log.debug("UDF {} runner {}: closing stdin: {}", handler, id, e.toString());
    }
  }

  /** Waits up to {@code timeout} for the process to exit; false when it is still running. */
  boolean awaitExit(Duration timeout) throws InterruptedException {
    try {
      process.exited().get(Math.max(timeout.toNanos(), 0), TimeUnit.NANOSECONDS);
      return true;
    } catch (TimeoutException e) {
      return false;
    } catch (ExecutionException e) {
      return true;
    }
  }

  void kill() {
    process.kill();
    if (writer != null) {
      writer.interrupt();
    }
  }

  private String exitDescription() {
    try {
      int status = process.exited().get(5, TimeUnit.SECONDS);
      return ExitStatus.describe(status);
    } catch (TimeoutException e) {
      process.kill();
      return "stopped answering";
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return "stopped answering";
    } catch (ExecutionException e) {
      // No status to tell (a runner over TCP): what is known of its end.
      return e.getCause() == null || e.getCause().getMessage() == null
          ? "ended"
          : e.getCause().getMessage();
    }
  }

  /** The last lines of this runner's output, after its stderr has been read to the end. */
  private String lastOutput() {
    try {
      drained.await(2, TimeUnit.SECONDS);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    String excerpt = tail.excerpt(EXCERPT_LINES);
    return excerpt.isEmpty() ? "" : ". Last output of the UDF process:" + excerpt;
  }

  private KilnException protocolError(String what) {
    log.error("UDF {} runner {} broke the runner protocol: {}", handler, id, what);
    return new KilnException(
        ErrorCode.INTERNAL,
        "the Kiln runner for this UDF sent "
            + what
            + "; this is a bug in Kiln (the runner was restarted)"
            + lastOutput());
  }

  private JsonNode json(FrameIO.Frame frame, String what) throws KilnException {
    try {
      return JSON.readTree(frame.payload());
    } catch (IOException e) {
      kill();
      throw protocolError("a " + what + " frame that is not JSON (" + e.getMessage() + ")");
    }
  }

  static String describeLoadError(JsonNode error) {
    StringBuilder sb = new StringBuilder();
    String type = error.path("type").asText("");
    if (!type.isEmpty() && !error.path("type").isNull()) {
      sb.append(type).append(": ");
    }
    sb.append(error.path("message").asText("unknown error"));
    JsonNode line = error.path("line");
    if (line.isNumber()) {
      sb.append(" (")
          .append(error.path("file").asText("udf.py"))
          .append(" line ")
          .append(line.asInt());
      JsonNode text = error.path("text");
      if (text.isTextual() && !text.asText().isBlank()) {
        sb.append(": ").append(text.asText().strip());
      }
      sb.append(')');
    }
    return sb.toString();
  }

  /** Splits stderr into lines for the tails; runs until the stream ends. */
  private void drain(InputStream err) {
    byte[] buf = new byte[8192];
    ByteArrayOutputStream line = new ByteArrayOutputStream();
    int limit = OutputTail.MAX_LINE_CHARS * 4;
    try (err) {
      int n;
      while ((n = err.read(buf)) > 0) {
        for (int i = 0; i < n; i++) {
          byte b = buf[i];
          if (b == '\n') {
            emit(line);
          } else if (line.size() < limit) {
            line.write(b);
          }
        }
      }
    } catch (IOException e) {
      log.debug("UDF {} runner {}: output stream ended: {}", handler, id, e.toString());
    } finally {
      if (line.size() > 0) {
        emit(line);
      }
      synchronized (syncLock) {
        outputEnded = true;
        syncLock.notifyAll();
      }
      drained.countDown();
    }
  }

  private void emit(ByteArrayOutputStream bytes) {
    String text = bytes.toString(StandardCharsets.UTF_8);
    bytes.reset();
    if (text.endsWith(OUTPUT_SYNC)) {
      // A partial line the UDF left without a newline ends just before the mark.
      String before = text.substring(0, text.length() - OUTPUT_SYNC.length());
      if (!before.isEmpty()) {
        keep(before);
      }
      synchronized (syncLock) {
        syncs++;
        syncLock.notifyAll();
      }
      return;
    }
    keep(text);
  }

  private void keep(String text) {
    if (text.endsWith("\r")) {
      text = text.substring(0, text.length() - 1);
    }
    if (text.length() > OutputTail.MAX_LINE_CHARS) {
      text = text.substring(0, OutputTail.MAX_LINE_CHARS) + "…";
    }
    tail.add(text);
    poolTail.add(text);
    log.debug("UDF {} runner {}: {}", handler, id, text);
  }

  private static String seconds(Duration d) {
    long ms = d.toMillis();
    return ms % 1000 == 0 ? (ms / 1000) + " s" : String.format("%.1f s", ms / 1000.0);
  }
}
