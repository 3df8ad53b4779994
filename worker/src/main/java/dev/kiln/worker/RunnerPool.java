package dev.kiln.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.io.IOException;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The runner processes of one UDF, and the only way to call it: one batch in, one result vector
 * out.
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
 * A slot whose replacement cannot start retries with backoff while other runners are alive; when
 * none is, it fails queued calls one at a time, each after one more attempt, so callers fail fast
 * instead of waiting for a runner that will never come.
 */
public final class RunnerPool implements AutoCloseable {

  /**
   * How many runners, how long to wait for one to start and for one batch, how many lines of the
   * UDF's output to keep, and each runner's memory limit.
   *
   * @param runnerMemoryBytes address-space limit of each runner process (RLIMIT_AS); 0 for none. A
   *     runner that exceeds it fails its batch with "memory limit N MiB exceeded" and is replaced
   */
  public record Options(
      int runners,
      Duration startTimeout,
      Duration batchTimeout,
      int outputTailLines,
      long runnerMemoryBytes) {
    public Options {
      if (runners < 1) {
        throw new IllegalArgumentException("a pool needs at least one runner, got " + runners);
      }
      requirePositive(startTimeout, "startTimeout");
      requirePositive(batchTimeout, "batchTimeout");
      if (outputTailLines < 0) {
        throw new IllegalArgumentException("outputTailLines must be >= 0, got " + outputTailLines);
      }
      if (runnerMemoryBytes != 0 && runnerMemoryBytes < MIN_RUNNER_MEMORY) {
        throw new IllegalArgumentException(
            "runnerMemoryBytes must be 0 (no limit) or at least 32 MiB, got " + runnerMemoryBytes);
      }
    }

    /** Options without a per-runner memory limit. */
    public Options(int runners, Duration startTimeout, Duration batchTimeout, int outputTailLines) {
      this(runners, startTimeout, batchTimeout, outputTailLines, 0);
    }

    /** One runner, 30 s to start, 300 s per batch, 50 lines of output, no memory limit. */
    public static Options defaults() {
      return new Options(1, Duration.ofSeconds(30), Duration.ofSeconds(300), 50, 0);
    }

    /** These options with another per-runner memory limit. */
    public Options withRunnerMemoryBytes(long bytes) {
      return new Options(runners, startTimeout, batchTimeout, outputTailLines, bytes);
    }

    /**
     * Each runner's share of a sandbox's memory: what is left after {@value #SANDBOX_RESERVE_MIB}
     * MiB for the sandbox itself (its init process and gVisor's own use), split evenly, and at
     * least 64 MiB. Runners hitting it fail their batch cleanly instead of the whole sandbox being
     * killed by its memory limit.
     */
    public static long memoryPerRunner(long sandboxMemoryBytes, int runners) {
      long share = (sandboxMemoryBytes - (SANDBOX_RESERVE_MIB << 20)) / Math.max(runners, 1);
      return Math.max(share, 64L << 20) & ~((1L << 20) - 1);
    }

    static final long SANDBOX_RESERVE_MIB = 64;

    private static void requirePositive(Duration d, String name) {
      Objects.requireNonNull(d, name);
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException(name + " must be positive, got " + d);
      }
    }
  }

  /**
   * What a UDF has done so far, for the status endpoints and {@code kiln logs}.
   *
   * @param requestCount batches computed or attempted (Databend sends one batch per request)
   * @param firstRequestTime when the first batch arrived; null before any
   * @param lastRequestTime when the latest batch arrived; null before any
   * @param rows rows received
   * @param rowErrors rows that failed and were returned as NULL ({@code on_error="null"})
   * @param failedRequests batches that failed
   * @param runners runner slots of the pool
   * @param liveRunners runner processes alive now
   * @param restarts runners replaced after a crash, timeout or memory limit
   */
  public record Stats(
      long requestCount,
      Instant firstRequestTime,
      Instant lastRequestTime,
      long rows,
      long rowErrors,
      long failedRequests,
      int runners,
      int liveRunners,
      long restarts) {}

  /** Batches smaller than twice this are never split; slices are at least this many rows. */
  static final int MIN_SLICE_ROWS = 4096;

  static final long MIN_RUNNER_MEMORY = 32L << 20;

  private static final Logger log = LoggerFactory.getLogger(RunnerPool.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final long POLL_MILLIS = 100;
  private static final Duration MAX_RESTART_BACKOFF = Duration.ofSeconds(30);

  private final UdfSignature signature;
  private final RunnerLauncher launcher;
  private final Options options;
  private final InstantSource clock;
  private final OutputTail output;
  private final ScheduledThreadPoolExecutor timer;
  private final LinkedBlockingDeque<Task> queue = new LinkedBlockingDeque<>();
  private final List<Slot> slots = new CopyOnWriteArrayList<>();
  private final Set<Runner> live = ConcurrentHashMap.newKeySet();
  private final AtomicInteger nextId = new AtomicInteger();
  private final AtomicInteger idleSlots = new AtomicInteger();
  private final AtomicLong requests = new AtomicLong();
  private final AtomicLong rowsSeen = new AtomicLong();
  private final AtomicLong rowErrors = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  private final AtomicLong restarts = new AtomicLong();
  private final AtomicReference<Instant> firstRequest = new AtomicReference<>();
  private volatile Instant lastRequest;
  private volatile boolean closed;

  private RunnerPool(
      UdfSignature signature, RunnerLauncher launcher, Options options, InstantSource clock) {
    this.signature = signature;
    this.launcher = launcher;
    this.options = options;
    this.clock = clock;
    this.output = new OutputTail(options.outputTailLines());
    this.timer =
        new ScheduledThreadPoolExecutor(
            1,
            r ->
                Thread.ofPlatform()
                    .daemon()
                    .name("kiln-runner-watchdog-" + signature.handler())
                    .unstarted(r));
    timer.setRemoveOnCancelPolicy(true);
  }

  /**
   * Starts {@code options.runners()} runners and waits until every one is ready.
   *
   * @throws KilnException BAD_INPUT for a type the wire cannot carry, LOAD_FAILED when the code
   *     does not load (or its {@code @udf} decorator disagrees with the signature), UNAVAILABLE
   *     when a runner cannot be started in time
   */
  public static RunnerPool start(UdfSignature signature, RunnerLauncher launcher, Options options)
      throws KilnException, InterruptedException {
    return start(signature, launcher, options, InstantSource.system());
  }

  static RunnerPool start(
      UdfSignature signature, RunnerLauncher launcher, Options options, InstantSource clock)
      throws KilnException, InterruptedException {
    Objects.requireNonNull(launcher, "launcher");
    for (DataType type : signature.inputTypes()) {
      requireSupported(type);
    }
    requireSupported(signature.resultType());
    RunnerPool pool = new RunnerPool(signature, launcher, options, clock);
    try {
      List<Runner> runners = pool.launchAll();
      for (Runner runner : runners) {
        pool.startSlot(runner);
      }
    } catch (KilnException | InterruptedException | RuntimeException e) {
      pool.close();
      throw e;
    }
    return pool;
  }

  /**
   * Checks that UDFs can take or return {@code type}; the control plane calls it to reject a spec
   * before building anything. Every Databend type is supported; only absurd shapes are not.
   *
   * @throws KilnException UNSUPPORTED_TYPE naming the type and what is wrong with it
   */
  public static void requireSupported(DataType type) throws KilnException {
    BatchEncoder.requireEncodable(type);
  }

  private List<Runner> launchAll() throws KilnException, InterruptedException {
    if (options.runners() == 1) {
      return List.of(launch());
    }
    List<Runner> runners = new ArrayList<>();
    try (ExecutorService starters =
        Executors.newThreadPerTaskExecutor(
            Thread.ofPlatform()
                .daemon()
                .name("kiln-runner-start-" + signature.handler(), 0)
                .factory())) {
      List<Future<Runner>> started = new ArrayList<>();
      for (int i = 0; i < options.runners(); i++) {
        started.add(starters.submit(this::launch));
      }
      KilnException failure = null;
      for (Future<Runner> future : started) {
        try {
          runners.add(future.get());
        } catch (ExecutionException e) {
          KilnException cause =
              e.getCause() instanceof KilnException u
                  ? u
                  : new KilnException(
                      ErrorCode.INTERNAL, "starting a UDF process failed", e.getCause());
          // A load failure says the most; prefer it over a slow or lost sibling.
          if (failure == null
              || (cause.code() == ErrorCode.UDF_LOAD_FAILED
                  && failure.code() != ErrorCode.UDF_LOAD_FAILED)) {
            failure = cause;
          }
        }
      }
      if (failure != null) {
        throw failure;
      }
    }
    return runners;
  }

  private Runner launch() throws KilnException, InterruptedException {
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
            nextId.incrementAndGet(),
            signature.handler(),
            process,
            output,
            options.outputTailLines(),
            timer);
    live.add(runner);
    try {
      JsonNode ready = runner.awaitReady(options.startTimeout());
      checkDeclaredTypes(ready.path("declared"));
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

  /**
   * Checks the types a {@code databend_udf} {@code @udf(input_types=…, result_type=…)} decorator
   * declares against the function's SQL signature (nullability aside: databend-udf reads a bare
   * type as nullable).
   */
  private void checkDeclaredTypes(JsonNode declared) throws KilnException {
    if (declared.isMissingNode() || declared.isNull()) {
      return;
    }
    List<String> inputs = new ArrayList<>();
    declared.path("input_types").forEach(n -> inputs.add(n.asText()));
    String result = declared.path("result_type").asText("");
    List<DataType> expected = signature.inputTypes();
    boolean same = inputs.size() == expected.size() && sameShape(result, signature.resultType());
    for (int i = 0; same && i < inputs.size(); i++) {
      same = sameShape(inputs.get(i), expected.get(i));
    }
    if (!same) {
      throw new KilnException(
          ErrorCode.UDF_LOAD_FAILED,
          "the @udf decorator of "
              + signature.handler()
              + " declares input_types="
              + inputs
              + ", result_type="
              + result
              + ", but the SQL function takes "
              + expected
              + " and returns "
              + signature.resultType()
              + "; make the decorator and the CREATE FUNCTION statement agree");
    }
  }

  /** True when {@code text} parses to the same type as {@code type}, nullability aside. */
  private static boolean sameShape(String text, DataType type) {
    DataType parsed;
    try {
      parsed = DataType.parse(text);
    } catch (KilnException e) {
      // A pyarrow type object or a spelling Databend does not know: nothing to compare.
      log.debug("cannot compare the @udf type '{}' with {}: {}", text, type, e.getMessage());
      return true;
    }
    return sameShape(parsed, type);
  }

  private static boolean sameShape(DataType a, DataType b) {
    if (a.kind() != b.kind()
        || a.precision() != b.precision()
        || a.scale() != b.scale()
        || a.dimension() != b.dimension()
        || a.children().size() != b.children().size()) {
      return false;
    }
    for (int i = 0; i < a.children().size(); i++) {
      if (!sameShape(a.children().get(i), b.children().get(i))) {
        return false;
      }
    }
    return true;
  }

  private void startSlot(Runner runner) {
    Slot slot = new Slot(slots.size(), runner);
    // Idle from now, not from when its thread first runs: a call made right after start() must
    // see every ready runner (and be sliced across them) however late the threads are scheduled.
    idleSlots.incrementAndGet();
    slot.countedIdle = true;
    slots.add(slot);
    Thread.ofPlatform()
        .daemon()
        .name("kiln-runner-slot-" + signature.handler() + "-" + slot.index)
        .start(slot);
  }

  /**
   * Runs one batch: {@code inputs} holds one vector per argument with at least {@code rowCount}
   * values. Returns a new vector of the declared result type (named {@code output}, declared
   * nullability) allocated from {@code allocator}; the caller owns and closes it.
   */
  public FieldVector call(List<FieldVector> inputs, int rowCount, BufferAllocator allocator)
      throws KilnException, InterruptedException {
    return call(inputs, rowCount, allocator, () -> false).vector();
  }

  /**
   * As {@link #call(List, int, BufferAllocator)}, giving up if the caller goes away; the result
   * also says how many rows failed and were returned as NULL.
   */
  ResultDecoder.Result call(
      List<FieldVector> inputs, int rowCount, BufferAllocator allocator, BooleanSupplier cancelled)
      throws KilnException, InterruptedException {
    Instant now = clock.instant();
    firstRequest.compareAndSet(null, now);
    lastRequest = now;
    requests.incrementAndGet();
    try {
      checkInputs(inputs, rowCount);
      rowsSeen.addAndGet(rowCount);
      ResultDecoder.Result result = compute(inputs, rowCount, allocator, cancelled);
      rowErrors.addAndGet(result.rowErrors());
      return result;
    } catch (KilnException | InterruptedException | RuntimeException e) {
      failed.incrementAndGet();
      throw e;
    }
  }

  private ResultDecoder.Result compute(
      List<FieldVector> inputs, int rowCount, BufferAllocator allocator, BooleanSupplier cancelled)
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
        FrameIO.Encoded frame =
            BatchEncoder.encodeBatch(
                inputs, signature.inputTypes(), start, end - start, signature.resultType());
        Task task = new Task(frame, end - start);
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
      try {
        return ResultDecoder.decodeResults(payloads, rows, signature.resultType(), allocator);
      } catch (FrameIO.MalformedFrameException e) {
        log.error(
            "UDF {}: malformed result from a runner: {}", signature.handler(), e.getMessage());
        throw new KilnException(
            ErrorCode.INTERNAL,
            "the Kiln runner for this UDF sent a malformed result ("
                + e.getMessage()
                + "); this is a bug in Kiln");
      }
    } catch (KilnException | InterruptedException | RuntimeException e) {
      // The caller is gone or failed: queued slices are dropped, running ones finish unheard.
      for (Task task : tasks) {
        queue.remove(task);
        task.abandon();
      }
      throw e;
    }
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
  private List<byte[]> await(List<Task> tasks, BooleanSupplier cancelled)
      throws KilnException, InterruptedException {
    List<byte[]> results = new ArrayList<>(tasks.size());
    for (Task task : tasks) {
      while (true) {
        try {
          results.add(task.done.get(POLL_MILLIS, TimeUnit.MILLISECONDS));
          break;
        } catch (TimeoutException e) {
          if (cancelled.getAsBoolean()) {
            throw new KilnException(
                ErrorCode.CALL_CANCELLED, "the call was cancelled while the UDF was computing");
          }
          if (closed && !task.done.isDone()) {
            // close() fails what is queued; this catches a slice requeued just as it ran.
            task.done.completeExceptionally(shuttingDown());
          }
        } catch (ExecutionException e) {
          throw e.getCause() instanceof KilnException u
              ? u
              : new KilnException(ErrorCode.INTERNAL, "a UDF slice failed: " + e.getCause(), e);
        }
      }
    }
    return results;
  }

  private void checkInputs(List<FieldVector> inputs, int rowCount) throws KilnException {
    List<DataType> types = signature.inputTypes();
    if (inputs.size() != types.size()) {
      throw new KilnException(
          ErrorCode.ARGUMENTS_MISMATCH,
          "the function "
              + signature.handler()
              + " takes "
              + types.size()
              + " argument(s), but the call has "
              + inputs.size()
              + " column(s)");
    }
    if (rowCount < 0) {
      throw new IllegalArgumentException("rowCount " + rowCount);
    }
    for (int i = 0; i < inputs.size(); i++) {
      FieldVector v = inputs.get(i);
      if (!ArrowTypes.accepts(types.get(i), v.getField())) {
        throw new KilnException(
            ErrorCode.ARGUMENTS_MISMATCH,
            "argument arg"
                + (i + 1)
                + " is declared "
                + types.get(i)
                + " but arrived as Arrow "
                + ArrowTypes.describe(v.getField()));
      }
      if (v.getValueCount() < rowCount) {
        throw new KilnException(
            ErrorCode.ARGUMENTS_MISMATCH,
            "argument arg"
                + (i + 1)
                + " has "
                + v.getValueCount()
                + " values for "
                + rowCount
                + " rows");
      }
    }
  }

  /** A slice of a batch waiting for, or being computed by, a runner. */
  private static final class Task {
    final FrameIO.Encoded frame;
    final int rows;

    /** Completes with the RESULT payload, or with the KilnException that ended the slice. */
    final CompletableFuture<byte[]> done = new CompletableFuture<>();

    private boolean abandoned;

    Task(FrameIO.Encoded frame, int rows) {
      this.frame = frame;
      this.rows = rows;
    }

    /** Claims the task for a runner; false when its caller has gone. */
    synchronized boolean start() {
      return !abandoned;
    }

    synchronized void abandon() {
      abandoned = true;
    }
  }

  /** One runner's place: a thread that keeps a runner alive and feeds it slices. */
  private final class Slot implements Runnable {
    final int index;
    volatile Runner runner;
    private KilnException failure;
    private Duration backoff = Duration.ofSeconds(1);

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
      r.send(current.frame);
      while (current != null) {
        // Only when no other runner is idle: an idle one should take it instead.
        Task next = closed || idleSlots.get() > 0 ? null : queue.poll();
        if (next != null && next.start()) {
          r.send(next.frame);
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
        backoff = Duration.ofSeconds(1);
        return true;
      } catch (KilnException e) {
        if (closed) {
          return false;
        }
        failure = e;
        log.warn(
            "UDF {}: a replacement runner failed to start: {}",
            signature.handler(),
            e.getMessage());
      }
      if (slots.stream().anyMatch(Slot::healthy)) {
        // Others still serve; try again later instead of failing calls they could take.
        long until = System.nanoTime() + backoff.toNanos();
        while (!closed && System.nanoTime() < until) {
          Thread.sleep(Math.min(POLL_MILLIS, Math.max(1, (until - System.nanoTime()) / 1_000_000)));
        }
        backoff =
            backoff.multipliedBy(2).compareTo(MAX_RESTART_BACKOFF) > 0
                ? MAX_RESTART_BACKOFF
                : backoff.multipliedBy(2);
        return false;
      }
      // No runner anywhere: the next queued call fails now rather than wait for nothing.
      Task task = take();
      if (task != null && task.start()) {
        task.done.completeExceptionally(
            new KilnException(
                failure.code(),
                "the UDF process stopped earlier and could not be restarted: "
                    + failure.getMessage(),
                failure));
      }
      return false;
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
          log.warn("UDF {} runner {}: {}", signature.handler(), r.id(), message);
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

  private static KilnException shuttingDown() {
    return new KilnException(
        ErrorCode.SHUTTING_DOWN,
        "the UDF is shutting down (its sandbox is being stopped); run the query again");
  }

  /** The last lines the UDF printed (stdout and stderr, every runner), oldest first. */
  public List<String> recentOutput() {
    return output.lines();
  }

  /** True while the pool is open and at least one runner process is alive. */
  public boolean isHealthy() {
    return !closed && slots.stream().anyMatch(Slot::healthy);
  }

  /** Counters since the pool started; cheap, for status endpoints. */
  public Stats stats() {
    return new Stats(
        requests.get(),
        firstRequest.get(),
        lastRequest,
        rowsSeen.get(),
        rowErrors.get(),
        failed.get(),
        options.runners(),
        (int) slots.stream().filter(Slot::healthy).count(),
        restarts.get());
  }

  /** The signature this pool computes. */
  public UdfSignature signature() {
    return signature;
  }

  /** Ends every runner: closes its stdin, waits briefly for it to exit, then kills it. */
  @Override
  public void close() {
    closed = true;
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
