package dev.kiln.worker;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The runner processes of one UDF, and the only way to call it: one batch in, one result vector
 * out.
 *
 * <p>A call is checked against the signature, encoded as one BATCH frame or, when runners are idle
 * and the batch is large, as contiguous slices that idle runners compute in parallel ({@link
 * RunnerSlots} schedules them, restarts runners that fail, and says how), and its results are
 * decoded into one vector in order. A failing runner fails only the call it was computing. The pool
 * counts what it has done for the status endpoints ({@link #stats}).
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
   * @param inFlight batches being computed now
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
      long restarts,
      int inFlight) {}

  static final long MIN_RUNNER_MEMORY = 32L << 20;

  private static final Logger log = LoggerFactory.getLogger(RunnerPool.class);

  private final UdfSignature signature;
  private final Options options;
  private final TimeSource time;
  private final RunnerSlots slots;
  private final AtomicLong requests = new AtomicLong();
  private final AtomicLong rowsSeen = new AtomicLong();
  private final AtomicLong rowErrors = new AtomicLong();
  private final AtomicLong failed = new AtomicLong();
  private final AtomicInteger inFlight = new AtomicInteger();
  private final AtomicReference<Instant> firstRequest = new AtomicReference<>();
  private volatile Instant lastRequest;

  private RunnerPool(
      UdfSignature signature, RunnerLauncher launcher, Options options, TimeSource time) {
    this.signature = signature;
    this.options = options;
    this.time = time;
    this.slots =
        new RunnerSlots(
            signature.handler(),
            launcher,
            options,
            time,
            ready -> checkDeclaredTypes(ready.path("declared")));
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
    return start(signature, launcher, options, TimeSource.SYSTEM);
  }

  /** As {@link #start(UdfSignature, RunnerLauncher, Options)}, on the given time source. */
  static RunnerPool start(
      UdfSignature signature, RunnerLauncher launcher, Options options, TimeSource time)
      throws KilnException, InterruptedException {
    Objects.requireNonNull(launcher, "launcher");
    for (DataType type : signature.inputTypes()) {
      requireSupported(type);
    }
    requireSupported(signature.resultType());
    RunnerPool pool = new RunnerPool(signature, launcher, options, time);
    try {
      for (Runner runner : pool.launchAll()) {
        pool.slots.startSlot(runner);
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
      return List.of(slots.launch());
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
        started.add(starters.submit(slots::launch));
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
   * As {@link #call(List, int, BufferAllocator)}, giving up when {@code cancelled} says the caller
   * went away; the result also says how many rows failed and were returned as NULL.
   */
  ResultDecoder.Result call(
      List<FieldVector> inputs, int rowCount, BufferAllocator allocator, Cancellation cancelled)
      throws KilnException, InterruptedException {
    Instant now = time.instant();
    firstRequest.compareAndSet(null, now);
    lastRequest = now;
    requests.incrementAndGet();
    inFlight.incrementAndGet();
    try {
      checkInputs(inputs, rowCount);
      rowsSeen.addAndGet(rowCount);
      ResultDecoder.Result result = compute(inputs, rowCount, allocator, cancelled);
      rowErrors.addAndGet(result.rowErrors());
      return result;
    } catch (KilnException | InterruptedException | RuntimeException e) {
      failed.incrementAndGet();
      throw e;
    } finally {
      inFlight.decrementAndGet();
    }
  }

  private ResultDecoder.Result compute(
      List<FieldVector> inputs, int rowCount, BufferAllocator allocator, Cancellation cancelled)
      throws KilnException, InterruptedException {
    RunnerSlots.Computed computed =
        slots.compute(
            rowCount,
            (start, rows) ->
                BatchEncoder.encodeBatch(
                    inputs, signature.inputTypes(), start, rows, signature.resultType()),
            cancelled);
    try {
      ResultDecoder.Result result =
          ResultDecoder.decodeResults(
              computed.payloads(), computed.rows(), signature.resultType(), allocator);
      // Decoded into Arrow memory: the payloads are read no more.
      computed.payloads().forEach(FrameIO.RESULT_ARRAYS::give);
      return result;
    } catch (FrameIO.MalformedFrameException e) {
      log.error("UDF {}: malformed result from a runner: {}", signature.handler(), e.getMessage());
      throw new KilnException(
          ErrorCode.INTERNAL,
          "the Kiln runner for this UDF sent a malformed result ("
              + e.getMessage()
              + "); this is a bug in Kiln");
    }
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

  /** The last lines the UDF printed (stdout and stderr, every runner), oldest first. */
  public List<String> recentOutput() {
    return slots.recentOutput();
  }

  /**
   * Adds a line of Kiln's own about the UDF (a refused outbound connection, say) to its output, in
   * order with what the UDF printed, for {@code kiln logs}.
   */
  public void note(String line) {
    slots.note(line);
  }

  /** True while the pool is open and at least one runner process is alive. */
  public boolean isHealthy() {
    return slots.isHealthy();
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
        slots.liveRunners(),
        slots.restarts(),
        inFlight.get());
  }

  /** Batches being computed per runner slot now: cheap, for routing each batch. */
  public double load() {
    return inFlight.get() / (double) Math.max(1, options.runners());
  }

  /** The signature this pool computes. */
  public UdfSignature signature() {
    return signature;
  }

  /** Ends every runner: closes its stdin, waits briefly for it to exit, then kills it. */
  @Override
  public void close() {
    slots.close();
  }
}
