package dev.kiln.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Slot scheduling for a {@link RunnerPool}: its runner processes, and the threads that feed them
 * slices of batches.
 *
 * <p>Each runner has a slot: a thread that owns it, takes slices of batches from one FIFO queue
 * shared by all calls, and has its runner compute them one at a time. A call encodes its batch as
 * one slice, or, when runners are idle and the batch is large, as contiguous slices that idle
 * runners compute in parallel; it waits for them and joins the results in order. The queue is first
 * in, first out, so concurrent calls are served in arrival order and none starves; a call never
 * takes more slices than there are idle runners, so under load batches are not split at all.
 *
 * <p>While a runner computes a batch, its slot sends it the next queued one if no other runner is
 * idle, so under load a runner never waits for the worker to encode, send, receive and decode
 * between two batches (the pipe transfers alone cost milliseconds under gVisor).
 *
 * <p>A runner that dies, times out, runs out of memory or breaks the protocol fails only the slice
 * it was computing (and so only that call; a slice sent ahead to it goes back to the queue); its
 * slot kills it and starts a replacement before it takes more work, while the other slots carry on.
 * A slot whose replacement cannot start retries with backoff (1 s, doubling up to 30 s, timed by
 * the injected {@link TimeSource}) while other runners are alive; when none is, it fails queued
 * calls one at a time, each after one more attempt, so callers fail fast instead of waiting for a
 * runner that will never come.
 */
final class RunnerSlots {

  /** Checks what a runner said when it became ready (its READY frame's JSON). */
  @FunctionalInterface
  interface ReadyCheck {
    void check(JsonNode ready) throws KilnException;
  }

  /** Encodes rows {@code [start, start + rows)} of a call's batch as one BATCH frame. */
  @FunctionalInterface
  interface SliceEncoder {
    FrameIO.Encoded encode(int start, int rows) throws KilnException;
  }

  /** What the runners returned for one batch: each slice's RESULT payload and rows, in order. */
  record Computed(List<byte[]> payloads, int[] rows) {}

  /** Batches smaller than twice this are never split; slices are at least this many rows. */
  static final int MIN_SLICE_ROWS = 4096;

  static final Duration FIRST_RESTART_BACKOFF = Duration.ofSeconds(1);
  static final Duration MAX_RESTART_BACKOFF = Duration.ofSeconds(30);

  private static final Logger log = LoggerFactory.getLogger(RunnerSlots.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final long POLL_MILLIS = 100;

  private final String handler;
  private final RunnerLauncher launcher;
  private final RunnerPool.Options options;
  private final TimeSource time;
  private final ReadyCheck readyCheck;
  private final OutputTail output;
  private final ScheduledThreadPoolExecutor timer;
  private final LinkedBlockingDeque<Task> queue = new LinkedBlockingDeque<>();
  private final List<Slot> slots = new CopyOnWriteArrayList<>();
  private final Set<Runner> live = ConcurrentHashMap.newKeySet();
  private final AtomicInteger nextId = new AtomicInteger();
  private final AtomicInteger idleSlots = new AtomicInteger();
  private final AtomicLong restarts = new AtomicLong();
  private volatile boolean closed;

  /** Released by {@link #close}: wakes slots waiting out a restart backoff. */
  private final CountDownLatch closing = new CountDownLatch(1);

  RunnerSlots(
      String handler,
      RunnerLauncher launcher,
      RunnerPool.Options options,
      TimeSource time,
      ReadyCheck readyCheck) {
    this.handler = handler;
    this.launcher = launcher;
    this.options = options;
    this.time = time;
    this.readyCheck = readyCheck;
    this.output = new OutputTail(options.outputTailLines());
    this.timer =
        new ScheduledThreadPoolExecutor(
            1,
            r -> Thread.ofPlatform().daemon().name("kiln-runner-watchdog-" + handler).unstarted(r));
    timer.setRemoveOnCancelPolicy(true);
  }

  /** Starts one runner and waits until it is ready and has passed the {@link ReadyCheck}. */
  Runner launch() throws KilnException, InterruptedException {
    if (closed) {
      throw shuttingDown();
    }
    RunnerProcess process;
    try {
      process = launcher.launch(runnerEnvironment());
    } catch (IOException e) {
      throw new KilnException(
          ErrorCode.SANDBOX_UNAVAILABLE,
          "could not start a process for the UDF: " + e.getMessage() + "; try again in a moment",
          e);
    }
    Runner runner =
        new Runner(
            nextId.incrementAndGet(), handler, process, output, options.outputTailLines(), timer);
    live.add(runner);
    try {
      readyCheck.check(runner.awaitReady(options.startTimeout()));
    } catch (KilnException | InterruptedException | RuntimeException e) {
      live.remove(runner);
      runner.kill();
      throw e;
    }
    if (closed) {
      live.remove(runner);
      runner.kill();
      throw shuttingDown();
    }
    return runner;
  }

  private List<String> runnerEnvironment() {
    if (options.runnerMemoryBytes() == 0) {
      return List.of();
    }
    // Fewer malloc arenas: each one reserves 64 MiB of address space, which the limit counts.
    return List.of("KILN_MEMORY_LIMIT=" + options.runnerMemoryBytes(), "MALLOC_ARENA_MAX=2");
  }

  /** Gives a ready runner its slot, which from now on feeds it slices. */
  void startSlot(Runner runner) {
    Slot slot = new Slot(slots.size(), runner);
    // Idle from now, not from when its thread first runs: a call made right after start() must
    // see every ready runner (and be sliced across them) however late the threads are scheduled.
    idleSlots.incrementAndGet();
    slot.countedIdle = true;
    slots.add(slot);
    Thread.ofPlatform().daemon().name("kiln-runner-slot-" + handler + "-" + slot.index).start(slot);
  }

  /**
   * Computes one batch of {@code rowCount} rows: as one slice, or as contiguous slices for idle
   * runners, each encoded by {@code encoder}, queued, and awaited in order. Gives up when {@code
   * cancelled} says the caller has gone.
   */
  Computed compute(int rowCount, SliceEncoder encoder, Cancellation cancelled)
      throws KilnException, InterruptedException {
    if (closed) {
      throw shuttingDown();
    }
    int slices = sliceCount(rowCount);
    List<Task> tasks = new ArrayList<>(slices);
    try {
      for (int i = 0; i < slices; i++) {
        int start = (int) ((long) rowCount * i / slices);
        int end = (int) ((long) rowCount * (i + 1) / slices);
        Task task = new Task(encoder, start, end - start);
        tasks.add(task);
        queue.add(task);
      }
      if (closed) {
        throw shuttingDown();
      }
      List<byte[]> payloads = await(tasks, cancelled);
      int[] rows = new int[tasks.size()];
      for (int i = 0; i < rows.length; i++) {
        rows[i] = tasks.get(i).rows;
      }
      return new Computed(payloads, rows);
    } catch (KilnException | InterruptedException | RuntimeException e) {
      // The caller is gone or failed: queued slices are dropped, running ones finish unheard.
      for (Task task : tasks) {
        queue.remove(task);
        task.abandon();
      }
      throw e;
    }
  }

  /** Slices queued for a runner: for tests. */
  int queuedForTests() {
    return queue.size();
  }

  /** One slice per idle runner, for batches large enough to be worth splitting. */
  private int sliceCount(int rows) {
    if (slots.size() < 2 || rows < 2 * MIN_SLICE_ROWS) {
      return 1;
    }
    int free = idleSlots.get() - queue.size();
    if (free < 2) {
      return 1;
    }
    return Math.min(Math.min(free, slots.size()), rows / MIN_SLICE_ROWS);
  }

  /** Waits for every slice, in order; throws at the first failure or cancellation. */
  private List<byte[]> await(List<Task> tasks, Cancellation cancelled)
      throws KilnException, InterruptedException {
    List<byte[]> results = new ArrayList<>(tasks.size());
    Thread waiter = Thread.currentThread();
    long poll = cancelled.poll().toNanos();
    for (Task task : tasks) {
      // Parked until the slice is done, looking at cancellation every poll. A timed get() would
      // do the same but throw (and fill in) a TimeoutException per look: with 256 calls queued
      // for two runners, thousands a second.
      task.done.whenComplete((v, e) -> LockSupport.unpark(waiter));
      while (!task.done.isDone()) {
        LockSupport.parkNanos(poll);
        if (Thread.interrupted()) {
          throw new InterruptedException();
        }
        if (task.done.isDone()) {
          break;
        }
        if (cancelled.isCancelled()) {
          throw new KilnException(
              ErrorCode.CALL_CANCELLED, "the call was cancelled while the UDF was computing");
        }
        if (closed) {
          // close() fails what is queued; this catches a slice requeued just as it ran.
          task.done.completeExceptionally(shuttingDown());
        }
      }
      try {
        results.add(task.done.get());
      } catch (ExecutionException e) {
        throw e.getCause() instanceof KilnException u
            ? u
            : new KilnException(ErrorCode.INTERNAL, "a UDF slice failed: " + e.getCause(), e);
      }
    }
    return results;
  }

  /**
   * A slice of a batch waiting for, or being computed by, a runner. It is encoded when a runner's
   * slot takes it, not when it is queued: with hundreds of calls queued for a few runners, only the
   * slices about to be sent exist as frames (a 65,536-row batch is about a MiB).
   */
  private static final class Task {
    private final SliceEncoder encoder;
    private final int start;
    final int rows;
    private FrameIO.Encoded frame;

    /** Completes with the RESULT payload, or with the KilnException that ended the slice. */
    final CompletableFuture<byte[]> done = new CompletableFuture<>();

    private boolean abandoned;

    Task(SliceEncoder encoder, int start, int rows) {
      this.encoder = encoder;
      this.start = start;
      this.rows = rows;
    }

    /**
     * Claims the task for a runner and encodes its slice the first time, from the caller's columns;
     * false when the caller has gone, or when the slice cannot be encoded (the caller is then told
     * why).
     */
    synchronized boolean start() {
      if (abandoned) {
        return false;
      }
      if (frame == null) {
        try {
          frame = encoder.encode(start, rows);
        } catch (KilnException | RuntimeException e) {
          done.completeExceptionally(e);
          return false;
        }
      }
      return true;
    }

    /** Claims the task only to fail it; false when its caller has gone. */
    synchronized boolean claim() {
      return !abandoned;
    }

    /** The frame {@link #start} encoded. */
    synchronized FrameIO.Encoded frame() {
      return frame;
    }

    /**
     * The caller has gone and its columns may be freed: no encoding starts after this returns, and
     * one under way has finished (both hold this task's monitor).
     */
    synchronized void abandon() {
      abandoned = true;
    }
  }

  /** One runner's place: a thread that keeps a runner alive and feeds it slices. */
  private final class Slot implements Runnable {
    final int index;
    volatile Runner runner;
    private KilnException failure;
    private Duration backoff = FIRST_RESTART_BACKOFF;

    /** Counted in {@code idleSlots} already by {@link #startSlot}, before its first take. */
    boolean countedIdle;

    Slot(int index, Runner runner) {
      this.index = index;
      this.runner = runner;
    }

    boolean healthy() {
      Runner r = runner;
      return r != null && r.isAlive();
    }

    @Override
    public void run() {
      try {
        while (!closed) {
          if (runner == null && !replace()) {
            continue;
          }
          Task task = take();
          if (task == null || !task.start()) {
            continue;
          }
          serveFrom(task);
        }
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      } finally {
        Runner r = runner;
        if (r != null && closed) {
          r.closeInput();
        }
      }
    }

    /**
     * Serves {@code first} and whatever is queued behind it, keeping one more batch on its way to
     * the runner while it computes the current one (when every other runner is busy), so the runner
     * does not wait for the worker between batches. A batch sent ahead to a runner that then dies
     * before reaching it was never computed: it goes back to the front of the queue.
     */
    private void serveFrom(Task first) throws InterruptedException {
      Runner r = runner;
      Task current = first;
      r.send(current.frame());
      while (current != null) {
        // Only when no other runner is idle: an idle one should take it instead.
        Task next = closed || idleSlots.get() > 0 ? null : queue.poll();
        if (next != null && next.start()) {
          r.send(next.frame());
        } else {
          next = null;
        }
        boolean alive = false;
        try {
          alive = serve(r, current);
        } finally {
          // Only if serve() did not finish it (an interrupt): a caller must never wait forever.
          if (!current.done.isDone()) {
            current.done.completeExceptionally(shuttingDown());
          }
          if (!alive && next != null) {
            queue.addFirst(next);
            next = null;
          }
        }
        current = next;
      }
    }

    /** Starts a replacement runner; false when it failed (and the failure was dealt with). */
    private boolean replace() throws InterruptedException {
      try {
        runner = launch();
        failure = null;
        backoff = FIRST_RESTART_BACKOFF;
        return true;
      } catch (KilnException e) {
        if (closed) {
          return false;
        }
        failure = e;
        log.warn("UDF {}: a replacement runner failed to start: {}", handler, e.getMessage());
      }
      if (slots.stream().anyMatch(Slot::healthy)) {
        // Others still serve; try again later instead of failing calls they could take.
        awaitBackoff();
        backoff =
            backoff.multipliedBy(2).compareTo(MAX_RESTART_BACKOFF) > 0
                ? MAX_RESTART_BACKOFF
                : backoff.multipliedBy(2);
        return false;
      }
      // No runner anywhere: the next queued call fails now rather than wait for nothing.
      Task task = take();
      if (task != null && task.claim()) {
        task.done.completeExceptionally(
            new KilnException(
                failure.code(),
                "the UDF process stopped earlier and could not be restarted: "
                    + failure.getMessage(),
                failure));
      }
      return false;
    }

    /**
     * Waits out the backoff as the injected ticker measures it (reading it once per check, at least
     * every {@code POLL_MILLIS}), or until the pool closes.
     */
    private void awaitBackoff() throws InterruptedException {
      long until = time.nanoTime() + backoff.toNanos();
      long left;
      while (!closed && (left = until - time.nanoTime()) > 0) {
        closing.await(Math.min(POLL_MILLIS, Math.max(1, left / 1_000_000)), TimeUnit.MILLISECONDS);
      }
    }

    private Task take() throws InterruptedException {
      if (countedIdle) {
        countedIdle = false;
      } else {
        idleSlots.incrementAndGet();
      }
      try {
        while (!closed) {
          Task task = queue.poll(POLL_MILLIS, TimeUnit.MILLISECONDS);
          if (task != null) {
            return task;
          }
        }
        return null;
      } finally {
        idleSlots.decrementAndGet();
      }
    }

    /** Reads the answer to {@code task}; returns false when the runner is gone. */
    private boolean serve(Runner r, Task task) throws InterruptedException {
      Runner.Reply reply;
      try {
        reply = r.receive(task.rows, options.batchTimeout());
      } catch (KilnException | RuntimeException e) {
        retire(r);
        task.done.completeExceptionally(
            e instanceof KilnException
                ? e
                : new KilnException(ErrorCode.INTERNAL, "calling the UDF failed: " + e, e));
        return false;
      }
      FrameIO.Frame frame = reply.frame();
      // Answered: no runner reads the batch's frame again.
      FrameIO.BATCH_ARRAYS.give(task.frame().bytes());
      if (frame.type() == FrameIO.BATCH_ERROR) {
        task.done.completeExceptionally(batchError(r, frame, reply.output()));
        return runner == r;
      }
      task.done.complete(frame.payload());
      return true;
    }

    private KilnException batchError(Runner r, FrameIO.Frame reply, String output) {
      JsonNode error;
      try {
        error = JSON.readTree(reply.payload());
      } catch (IOException e) {
        retire(r);
        return new KilnException(
            ErrorCode.INTERNAL, "the Kiln runner sent an unreadable error; this is a bug");
      }
      String message = error.path("message").asText("the UDF failed without a message");
      return switch (error.path("kind").asText("user")) {
        case "input" -> new KilnException(ErrorCode.ARGUMENTS_MISMATCH, message);
        case "internal" -> new KilnException(ErrorCode.INTERNAL, message + output);
        case "memory" -> {
          // Memory may be fragmented or half-freed: start afresh.
          retire(r);
          log.warn("UDF {} runner {}: {}", handler, r.id(), message);
          yield new KilnException(
              ErrorCode.RUNNER_CRASHED,
              "the UDF process was killed: "
                  + memoryLimitText()
                  + " ("
                  + message
                  + "); Kiln started a new one, so the next call starts afresh. Use less memory"
                  + " per batch, or give the sandbox more memory (--sandbox-memory)"
                  + output);
        }
        default -> new KilnException(ErrorCode.UDF_RAISED, message + output);
      };
    }

    /** Kills a runner that can no longer be trusted; the loop starts its replacement. */
    private void retire(Runner r) {
      live.remove(r);
      r.kill();
      runner = null;
      if (!closed) {
        restarts.incrementAndGet();
      }
    }
  }

  private String memoryLimitText() {
    long limit = options.runnerMemoryBytes();
    return limit > 0 ? "memory limit " + (limit >> 20) + " MiB exceeded" : "out of memory";
  }

  static KilnException shuttingDown() {
    return new KilnException(
        ErrorCode.SHUTTING_DOWN,
        "the UDF is shutting down (its sandbox is being stopped); run the query again");
  }

  /** The last lines the UDF printed (stdout and stderr, every runner), oldest first. */
  List<String> recentOutput() {
    return output.lines();
  }

  /** Adds Kiln's own line to the UDF's output. */
  void note(String line) {
    output.add(line);
  }

  /** True while open and at least one runner process is alive. */
  boolean isHealthy() {
    return !closed && slots.stream().anyMatch(Slot::healthy);
  }

  /** Runner processes alive now. */
  int liveRunners() {
    return (int) slots.stream().filter(Slot::healthy).count();
  }

  /** Runners replaced after a crash, timeout or memory limit. */
  long restarts() {
    return restarts.get();
  }

  /** Ends every runner: closes its stdin, waits briefly for it to exit, then kills it. */
  void close() {
    closed = true;
    closing.countDown();
    List<Runner> runners = List.copyOf(live);
    live.clear();
    for (Task task = queue.poll(); task != null; task = queue.poll()) {
      task.done.completeExceptionally(shuttingDown());
    }
    runners.forEach(Runner::closeInput);
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
    boolean interrupted = false;
    for (Runner runner : runners) {
      try {
        if (!runner.awaitExit(Duration.ofNanos(deadline - System.nanoTime()))) {
          runner.kill();
        }
      } catch (InterruptedException e) {
        interrupted = true;
        runner.kill();
      }
    }
    timer.shutdownNow();
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
  }
}
