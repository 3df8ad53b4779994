package dev.kiln.worker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.resolver.DataType;
import java.io.IOException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.Set;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The runner processes of one UDF, and the only way to call it: one batch in, one result vector
 * out.
 *
 * <p>Each runner computes one batch at a time. Idle runners wait in a fair queue, so concurrent
 * calls are served in arrival order. A runner that dies, times out or breaks the protocol fails
 * only the call it was serving; it is killed and a replacement is started in the background, and
 * the next call waits for that replacement. When a replacement cannot start, its place in the queue
 * holds the failure, and the next call that takes it tries once more before giving up, so callers
 * fail fast instead of waiting for a runner that will never come.
 */
public final class RunnerPool implements AutoCloseable {

  /**
   * How many runners, how long to wait for one to start and for one batch, and how many lines of
   * the UDF's output to keep.
   */
  public record Options(
      int runners, Duration startTimeout, Duration batchTimeout, int outputTailLines) {
    public Options {
      if (runners < 1) {
        throw new IllegalArgumentException("a pool needs at least one runner, got " + runners);
      }
      requirePositive(startTimeout, "startTimeout");
      requirePositive(batchTimeout, "batchTimeout");
      if (outputTailLines < 0) {
        throw new IllegalArgumentException("outputTailLines must be >= 0, got " + outputTailLines);
      }
    }

    /** One runner, 30 s to start, 300 s per batch, 50 lines of output. */
    public static Options defaults() {
      return new Options(1, Duration.ofSeconds(30), Duration.ofSeconds(300), 50);
    }

    private static void requirePositive(Duration d, String name) {
      Objects.requireNonNull(d, name);
      if (d.isNegative() || d.isZero()) {
        throw new IllegalArgumentException(name + " must be positive, got " + d);
      }
    }
  }

  private static final Logger log = LoggerFactory.getLogger(RunnerPool.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final long POLL_MILLIS = 100;

  /** A place in the idle queue: a runner, or the reason no runner could be started for it. */
  private record Slot(Runner runner, UdfException failure) {}

  private final UdfSignature signature;
  private final RunnerLauncher launcher;
  private final Options options;
  private final OutputTail output;
  private final ScheduledThreadPoolExecutor timer;
  private final ArrayBlockingQueue<Slot> idle;
  private final Set<Runner> live = ConcurrentHashMap.newKeySet();
  private final AtomicInteger nextId = new AtomicInteger();
  private volatile boolean closed;

  private RunnerPool(UdfSignature signature, RunnerLauncher launcher, Options options) {
    this.signature = signature;
    this.launcher = launcher;
    this.options = options;
    this.output = new OutputTail(options.outputTailLines());
    this.idle = new ArrayBlockingQueue<>(options.runners(), true);
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
   * @throws UdfException BAD_INPUT for a type the wire does not carry yet, LOAD_FAILED when the
   *     code does not load, UNAVAILABLE when a runner cannot be started in time
   */
  public static RunnerPool start(UdfSignature signature, RunnerLauncher launcher, Options options)
      throws UdfException, InterruptedException {
    Objects.requireNonNull(launcher, "launcher");
    for (DataType type : signature.inputTypes()) {
      requireSupported(type);
    }
    requireSupported(signature.resultType());
    RunnerPool pool = new RunnerPool(signature, launcher, options);
    try {
      pool.launchAll();
    } catch (UdfException | InterruptedException | RuntimeException e) {
      pool.close();
      throw e;
    }
    return pool;
  }

  /**
   * Checks that UDFs can take or return {@code type} today; the control plane calls it to reject a
   * spec before building anything.
   *
   * @throws UdfException BAD_INPUT naming the type and what is supported
   */
  public static void requireSupported(DataType type) throws UdfException {
    WireFormat.typeCode(type);
  }

  private void launchAll() throws UdfException, InterruptedException {
    if (options.runners() == 1) {
      idle.add(new Slot(launch(), null));
      return;
    }
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
      UdfException failure = null;
      for (Future<Runner> future : started) {
        try {
          idle.add(new Slot(future.get(), null));
        } catch (ExecutionException e) {
          UdfException cause =
              e.getCause() instanceof UdfException u
                  ? u
                  : new UdfException(
                      UdfException.Kind.INTERNAL, "starting a UDF process failed", e.getCause());
          // A load failure says the most; prefer it over a slow or lost sibling.
          if (failure == null
              || (cause.kind() == UdfException.Kind.LOAD_FAILED
                  && failure.kind() != UdfException.Kind.LOAD_FAILED)) {
            failure = cause;
          }
        }
      }
      if (failure != null) {
        throw failure;
      }
    }
  }

  private Runner launch() throws UdfException, InterruptedException {
    if (closed) {
      throw shuttingDown();
    }
    RunnerProcess process;
    try {
      process = launcher.launch();
    } catch (IOException e) {
      throw new UdfException(
          UdfException.Kind.UNAVAILABLE,
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
      runner.awaitReady(options.startTimeout());
    } catch (UdfException | InterruptedException | RuntimeException e) {
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

  /**
   * Runs one batch: {@code inputs} holds one vector per argument with at least {@code rowCount}
   * values. Returns a new vector of the declared result type (named {@code output}, declared
   * nullability) allocated from {@code allocator}; the caller owns and closes it.
   */
  public FieldVector call(List<FieldVector> inputs, int rowCount, BufferAllocator allocator)
      throws UdfException, InterruptedException {
    return call(inputs, rowCount, allocator, () -> false);
  }

  /** As {@link #call(List, int, BufferAllocator)}, giving up the wait for a runner if cancelled. */
  FieldVector call(
      List<FieldVector> inputs, int rowCount, BufferAllocator allocator, BooleanSupplier cancelled)
      throws UdfException, InterruptedException {
    checkInputs(inputs, rowCount);
    byte[] batch =
        WireFormat.encodeBatch(inputs, signature.inputTypes(), rowCount, signature.resultType());
    Runner runner = acquire(cancelled);
    WireFormat.Frame reply;
    try {
      reply = runner.call(batch, rowCount, options.batchTimeout());
    } catch (UdfException | InterruptedException | RuntimeException e) {
      retire(runner);
      throw e;
    }
    try {
      if (reply.type() == WireFormat.BATCH_ERROR) {
        throw batchError(reply);
      }
      return WireFormat.decodeResult(reply.payload(), rowCount, signature.resultType(), allocator);
    } catch (WireFormat.MalformedFrameException e) {
      log.error(
          "UDF {}: malformed result from runner {}: {}",
          signature.handler(),
          runner.id(),
          e.getMessage());
      retire(runner);
      runner = null;
      throw new UdfException(
          UdfException.Kind.INTERNAL,
          "the Kiln runner for this UDF sent a malformed result ("
              + e.getMessage()
              + "); this is a bug in Kiln (the runner was restarted)");
    } finally {
      if (runner != null) {
        release(runner);
      }
    }
  }

  private void checkInputs(List<FieldVector> inputs, int rowCount) throws UdfException {
    List<DataType> types = signature.inputTypes();
    if (inputs.size() != types.size()) {
      throw new UdfException(
          UdfException.Kind.BAD_INPUT,
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
      if (!ArrowTypes.accepts(types.get(i), v.getField().getType())) {
        throw new UdfException(
            UdfException.Kind.BAD_INPUT,
            "argument arg"
                + (i + 1)
                + " is declared "
                + types.get(i)
                + " but arrived as Arrow "
                + ArrowTypes.describe(v.getField().getType()));
      }
      if (v.getValueCount() < rowCount) {
        throw new UdfException(
            UdfException.Kind.BAD_INPUT,
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

  private UdfException batchError(WireFormat.Frame reply) {
    JsonNode error;
    try {
      error = JSON.readTree(reply.payload());
    } catch (IOException e) {
      return new UdfException(
          UdfException.Kind.INTERNAL, "the Kiln runner sent an unreadable error; this is a bug");
    }
    String message = error.path("message").asText("the UDF failed without a message");
    return switch (error.path("kind").asText("user")) {
      case "input" -> new UdfException(UdfException.Kind.BAD_INPUT, message);
      case "internal" -> new UdfException(UdfException.Kind.INTERNAL, message);
      default -> new UdfException(UdfException.Kind.USER_ERROR, message);
    };
  }

  private Runner acquire(BooleanSupplier cancelled) throws UdfException, InterruptedException {
    while (true) {
      if (closed) {
        throw shuttingDown();
      }
      if (cancelled.getAsBoolean()) {
        throw new UdfException(
            UdfException.Kind.UNAVAILABLE, "the call was cancelled while waiting for the UDF");
      }
      Slot slot = idle.poll(POLL_MILLIS, TimeUnit.MILLISECONDS);
      if (slot == null) {
        continue;
      }
      if (slot.runner() != null) {
        if (closed) {
          slot.runner().kill();
          throw shuttingDown();
        }
        return slot.runner();
      }
      // No runner could be started for this place; try once more on the caller's time.
      try {
        return launch();
      } catch (UdfException e) {
        idle.offer(new Slot(null, e));
        throw new UdfException(
            e.kind(),
            "the UDF process stopped earlier and could not be restarted: " + e.getMessage(),
            e);
      } catch (InterruptedException | RuntimeException e) {
        idle.offer(slot);
        throw e;
      }
    }
  }

  private void release(Runner runner) {
    if (closed || !idle.offer(new Slot(runner, null))) {
      live.remove(runner);
      runner.closeInput();
    }
  }

  /** Kills a runner that can no longer be trusted and starts its replacement in the background. */
  private void retire(Runner runner) {
    live.remove(runner);
    runner.kill();
    if (closed) {
      return;
    }
    Thread.ofPlatform()
        .daemon()
        .name("kiln-runner-restart-" + signature.handler())
        .start(
            () -> {
              Slot slot;
              try {
                slot = new Slot(launch(), null);
              } catch (UdfException e) {
                log.warn(
                    "UDF {}: a replacement runner failed to start: {}",
                    signature.handler(),
                    e.getMessage());
                slot = new Slot(null, e);
              } catch (InterruptedException | RuntimeException e) {
                slot =
                    new Slot(
                        null,
                        new UdfException(
                            UdfException.Kind.UNAVAILABLE, "restarting the UDF process failed", e));
              }
              if (closed || !idle.offer(slot)) {
                if (slot.runner() != null) {
                  live.remove(slot.runner());
                  slot.runner().kill();
                }
              }
            });
  }

  private static UdfException shuttingDown() {
    return new UdfException(
        UdfException.Kind.UNAVAILABLE,
        "the UDF is shutting down (its sandbox is being stopped); run the query again");
  }

  /** The last lines the UDF printed (stdout and stderr, every runner), oldest first. */
  public List<String> recentOutput() {
    return output.lines();
  }

  /** True while the pool is open and at least one runner process is alive. */
  public boolean isHealthy() {
    return !closed && live.stream().anyMatch(Runner::isAlive);
  }

  /** Ends every runner: closes its stdin, waits briefly for it to exit, then kills it. */
  @Override
  public void close() {
    closed = true;
    List<Runner> runners = List.copyOf(live);
    live.clear();
    idle.clear();
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
