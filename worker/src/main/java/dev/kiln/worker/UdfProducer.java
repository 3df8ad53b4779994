package dev.kiln.worker;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import dev.kiln.definition.Tenant;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import org.apache.arrow.flight.FlightDescriptor;
import org.apache.arrow.flight.FlightInfo;
import org.apache.arrow.flight.FlightRuntimeException;
import org.apache.arrow.flight.FlightStream;
import org.apache.arrow.flight.NoOpFlightProducer;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Databend's server-UDF protocol: DoExchange computes a UDF over a stream of batches (one result
 * batch per input batch), GetFlightInfo describes its signature.
 *
 * <p>A call is checked in the order that gives the most useful error soonest: descriptor, token,
 * tenant, the UDF's existence, the input schema; only then does it wait (up to {@code readyWait},
 * while the caller is still there) for a UDF whose sandbox is still starting.
 */
final class UdfProducer extends NoOpFlightProducer {

  private static final Logger log = LoggerFactory.getLogger(UdfProducer.class);
  private static final long READY_POLL_MILLIS = 200;

  /** Databend sends the schema at once; a call that sends nothing must not hold a thread long. */
  static final Duration FIRST_MESSAGE_WAIT = Duration.ofSeconds(60);

  private final BufferAllocator allocator;
  private final Tokens tokens;
  private final UdfDirectory directory;
  private final MeterRegistry meters;
  private final Duration readyWait;
  private final AtomicInteger activeCalls = new AtomicInteger();
  private final Map<MeterKey, CallMeters> callMeters = new ConcurrentHashMap<>();
  // System.nanoTime() when the last DoExchange ended.
  private volatile long lastCallEnded = System.nanoTime() - Long.MAX_VALUE / 2;

  static final Duration ROW_ERROR_LOG_INTERVAL = Duration.ofSeconds(10);

  private final LogThrottle rowErrorLog =
      new LogThrottle(ROW_ERROR_LOG_INTERVAL, TimeSource.SYSTEM);

  /** What a call computes: a builtin (handle null) or a UDF from the directory. */
  private record Target(String name, String tenant, UdfSignature signature, UdfHandle handle) {
    boolean builtin() {
      return handle == null;
    }
  }

  UdfProducer(
      BufferAllocator allocator,
      Tokens tokens,
      UdfDirectory directory,
      MeterRegistry meters,
      Duration readyWait) {
    this.allocator = allocator;
    this.tokens = tokens;
    this.directory = directory;
    this.meters = meters;
    this.readyWait = readyWait;
  }

  @Override
  public FlightInfo getFlightInfo(CallContext context, FlightDescriptor descriptor) {
    String tag = "unknown";
    try {
      Target target = resolve(context, descriptor);
      tag = target.name();
      Schema schema = ArrowTypes.signatureSchema(target.signature());
      return new FlightInfo(schema, descriptor, List.of(), -1, -1);
    } catch (KilnException e) {
      countError(tag, context, e.code().name());
      throw FlightErrors.toFlight(e);
    } catch (FlightRuntimeException e) {
      countError(tag, context, e.status().code().name());
      throw e;
    }
  }

  /** DoExchange calls still running; at shutdown their buffers are in use, not leaked. */
  int activeCalls() {
    return activeCalls.get();
  }

  @Override
  public void doExchange(CallContext context, FlightStream reader, ServerStreamListener writer) {
    activeCalls.incrementAndGet();
    try {
      serveExchange(context, reader, writer);
    } finally {
      lastCallEnded = System.nanoTime();
      activeCalls.decrementAndGet();
    }
  }

  /** Whether a DoExchange is running, or one ended less than {@code quiet} ago. */
  boolean servedWithin(Duration quiet) {
    return activeCalls.get() > 0 || System.nanoTime() - lastCallEnded < quiet.toNanos();
  }

  private void serveExchange(
      CallContext context, FlightStream reader, ServerStreamListener writer) {
    String tag = "unknown";
    try {
      if (!awaitFirstMessage(context, reader)) {
        return;
      }
      Target target = resolve(context, reader.getDescriptor());
      tag = target.name();
      exchange(context, target, reader, writer);
    } catch (KilnException e) {
      countError(tag, context, e.code().name());
      log.info("UDF {}: call failed ({}): {}", tag, e.code(), e.getMessage(), e.getCause());
      writer.error(FlightErrors.toFlight(e));
    } catch (FlightRuntimeException e) {
      countError(tag, context, e.status().code().name());
      log.info("UDF {}: call failed ({}): {}", tag, e.status().code(), e.getMessage());
      writer.error(e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      countError(tag, context, ErrorCode.SHUTTING_DOWN.name());
      writer.error(
          FlightErrors.toFlight(
              new KilnException(
                  ErrorCode.SHUTTING_DOWN,
                  "the Kiln server is shutting down; run the query again")));
    } catch (RuntimeException e) {
      countError(tag, context, ErrorCode.INTERNAL.name());
      log.error("UDF {}: call failed with an internal error", tag, e);
      writer.error(
          FlightErrors.toFlight(
              new KilnException(
                  ErrorCode.INTERNAL,
                  "internal error in the Kiln worker ("
                      + e.getClass().getSimpleName()
                      + "); the server log has the details")));
    }
  }

  private void exchange(
      CallContext context, Target target, FlightStream reader, ServerStreamListener writer)
      throws KilnException, InterruptedException {
    UdfSignature signature = target.signature();
    checkSchema(signature, reader.getSchema());
    RunnerPool pool = target.builtin() ? null : awaitReady(context, target);
    // A cancelled call wakes its thread, which then need not look at cancellation often while its
    // batch waits for a runner.
    Thread caller = Thread.currentThread();
    writer.setOnCancelHandler(() -> LockSupport.unpark(caller));
    Cancellation cancelled = Cancellation.waking(context::isCancelled, Cancellation.FLIGHT_POLL);
    Field resultField = ArrowTypes.field(ArrowTypes.RESULT_FIELD, signature.resultType());
    CallMeters m =
        callMeters.computeIfAbsent(
            new MeterKey(target.name(), target.tenant()), k -> CallMeters.register(meters, k));
    Counter rowsCounter = m.rows();
    Counter batchCounter = m.batches();
    Counter rowErrors = m.rowErrors();
    Timer latency = m.latency();
    try (VectorSchemaRoot out =
        VectorSchemaRoot.create(new Schema(List.of(resultField)), allocator)) {
      // The response (and its headers) starts with the first result, never before: Databend
      // retries a call that breaks before the response headers arrived, but not one that breaks
      // after, so a server that dies while computing leaves a call that can be retried.
      boolean responding = false;
      while (reader.next()) {
        if (context.isCancelled()) {
          return;
        }
        VectorSchemaRoot in = reader.getRoot();
        int rows = in.getRowCount();
        long started = System.nanoTime();
        FieldVector result;
        if (pool == null) {
          result = Builtins.compute(target.name(), in.getFieldVectors(), rows, allocator);
        } else {
          ResultDecoder.Result r =
              target.handle().next(pool).call(in.getFieldVectors(), rows, allocator, cancelled);
          result = r.vector();
          if (r.rowErrors() > 0) {
            rowErrors.increment(r.rowErrors());
            logRowErrors(target.name(), r.rowErrors(), rows);
          }
        }
        try {
          result.makeTransferPair(out.getVector(0)).transfer();
        } finally {
          result.close();
        }
        out.setRowCount(rows);
        if (!responding) {
          start(writer, out);
          responding = true;
        }
        writer.putNext();
        latency.record(System.nanoTime() - started, TimeUnit.NANOSECONDS);
        rowsCounter.increment(rows);
        batchCounter.increment();
      }
      if (!responding) {
        start(writer, out);
      }
      writer.completed();
    }
  }

  private static void start(ServerStreamListener writer, VectorSchemaRoot out) {
    writer.start(out);
    // Each batch moves fresh buffers into `out` and never writes to ones already sent, so gRPC may
    // send them without a copy.
    writer.setUseZeroCopy(true);
  }

  /**
   * Waits for the first message (schema and descriptor) while the caller is there. Flight's own
   * {@code getDescriptor()} would block forever on a call that ends before its first message.
   */
  private boolean awaitFirstMessage(CallContext context, FlightStream reader)
      throws KilnException, InterruptedException {
    long start = System.nanoTime();
    long deadline = start + FIRST_MESSAGE_WAIT.toNanos();
    // Databend sends the schema right after the headers: look often at first (a late look is
    // latency on every tiny query), then back off for a caller that is slow to send anything.
    long pause = TimeUnit.MICROSECONDS.toNanos(20);
    while (!reader.hasRoot()) {
      if (context.isCancelled()) {
        return false;
      }
      if (System.nanoTime() - deadline > 0) {
        throw new KilnException(
            ErrorCode.INVALID_CALL,
            "the call sent no schema within "
                + FIRST_MESSAGE_WAIT.toSeconds()
                + " s of its start; a DoExchange starts with the input schema");
      }
      LockSupport.parkNanos(pause);
      if (Thread.interrupted()) {
        throw new InterruptedException();
      }
      long cap =
          System.nanoTime() - start < TimeUnit.MILLISECONDS.toNanos(100)
              ? TimeUnit.MILLISECONDS.toNanos(1)
              : TimeUnit.MILLISECONDS.toNanos(50);
      pause = Math.min(pause * 2, cap);
    }
    return true;
  }

  // ------------------------------------------------------------------ resolving a call

  private Target resolve(CallContext context, FlightDescriptor descriptor) throws KilnException {
    if (descriptor == null || descriptor.isCommand() || descriptor.getPath().size() != 1) {
      throw new KilnException(
          ErrorCode.INVALID_CALL,
          "the call needs a path descriptor with one element, the UDF's handler name, got "
              + descriptor);
    }
    String name = descriptor.getPath().get(0);
    Optional<UdfSignature> builtin = Builtins.signature(name);
    if (builtin.isPresent()) {
      return new Target(name, callTenant(context), builtin.get(), null);
    }
    CallHeadersMiddleware headers = context.getMiddleware(CallHeadersMiddleware.KEY);
    String token = headers == null ? null : headers.get(Tokens.HEADER);
    if (token == null || token.isEmpty()) {
      throw new KilnException(
          ErrorCode.TOKEN_MISSING,
          "missing " + Tokens.HEADER + " header; pass every header ApplyUdfResource returned");
    }
    Tokens.Grant grant =
        tokens
            .verify(token)
            .orElseThrow(
                () ->
                    new KilnException(
                        ErrorCode.TOKEN_INVALID,
                        "the "
                            + Tokens.HEADER
                            + " header is not a token of this Kiln server (it may be"
                            + " damaged, or the server's secret changed); run the query again"
                            + " so Databend calls ApplyUdfResource"));
    String header = headers.get(Tenant.HEADER);
    Tenant tenant = Tenant.fromHeader(header);
    if (!tenant.equals(grant.tenant())) {
      throw new KilnException(
          ErrorCode.TENANT_MISMATCH,
          header == null || header.isBlank()
              ? "the call has no "
                  + Tenant.HEADER
                  + " header (so it is tenant '"
                  + tenant
                  + "'), but its token belongs to tenant '"
                  + grant.tenant()
                  + "'"
              : "the token belongs to tenant '"
                  + grant.tenant()
                  + "', but the call comes from"
                  + " tenant '"
                  + tenant
                  + "'; use the headers ApplyUdfResource returned to"
                  + " this tenant");
    }
    UdfHandle handle =
        directory
            .find(grant.tenant(), grant.key())
            .orElseThrow(
                () ->
                    new KilnException(
                        ErrorCode.UDF_NOT_FOUND,
                        "this Kiln server has no record of that UDF resource (its worker was"
                            + " dropped, or the server runs on another data directory); run the"
                            + " query again so Databend asks Kiln for the UDF again"));
    UdfSignature signature = handle.signature();
    if (!signature.handler().equals(name)) {
      throw new KilnException(
          ErrorCode.INVALID_CALL,
          "the call asks for handler '"
              + name
              + "', but its token is for a UDF whose handler"
              + " is '"
              + signature.handler()
              + "'; pass the headers ApplyUdfResource returned"
              + " for this function");
    }
    return new Target(name, grant.tenant().name(), signature, handle);
  }

  private static void checkSchema(UdfSignature signature, Schema schema) throws KilnException {
    List<Field> fields = schema.getFields();
    List<DataType> types = signature.inputTypes();
    if (fields.size() != types.size()) {
      throw new KilnException(
          ErrorCode.ARGUMENTS_MISMATCH,
          "the function "
              + signature.handler()
              + " takes "
              + types.size()
              + " argument(s), but"
              + " the call sends "
              + fields.size()
              + " column(s)");
    }
    for (int i = 0; i < fields.size(); i++) {
      if (!ArrowTypes.accepts(types.get(i), fields.get(i))) {
        throw new KilnException(
            ErrorCode.ARGUMENTS_MISMATCH,
            "argument arg"
                + (i + 1)
                + " is declared "
                + types.get(i)
                + ", but the call sends Arrow "
                + ArrowTypes.describe(fields.get(i))
                + "; recreate the function with"
                + " the argument types the query passes");
      }
    }
  }

  /** Waits for the UDF's runners while the caller is still there, up to {@code readyWait}. */
  private RunnerPool awaitReady(CallContext context, Target target)
      throws KilnException, InterruptedException {
    CompletableFuture<RunnerPool> ready = target.handle().ready();
    long deadline = System.nanoTime() + readyWait.toNanos();
    while (true) {
      long left = deadline - System.nanoTime();
      try {
        return ready.get(
            Math.max(0, Math.min(left, TimeUnit.MILLISECONDS.toNanos(READY_POLL_MILLIS))),
            TimeUnit.NANOSECONDS);
      } catch (TimeoutException e) {
        if (context.isCancelled()) {
          throw new KilnException(
              ErrorCode.CALL_CANCELLED, "the call was cancelled while the UDF was starting");
        }
        if (deadline - System.nanoTime() <= 0) {
          throw new KilnException(
              ErrorCode.SANDBOX_UNAVAILABLE,
              "the UDF is still starting after "
                  + readyWait.toSeconds()
                  + " s (its image is being"
                  + " built or its sandbox started); run the query again in a moment");
        }
      } catch (ExecutionException | CompletionException e) {
        Throwable cause = e.getCause();
        if (cause instanceof KilnException u) {
          throw u;
        }
        throw new KilnException(
            ErrorCode.SANDBOX_UNAVAILABLE,
            "the UDF could not be started: " + (cause == null ? e : cause).getMessage(),
            cause);
      }
    }
  }

  // ------------------------------------------------------------------ metrics

  /** At most one line per handler every {@link #ROW_ERROR_LOG_INTERVAL}: failures can be many. */
  private void logRowErrors(String handler, int errors, int rows) {
    if (!rowErrorLog.allow(handler)) {
      return;
    }
    log.info(
        "UDF {}: {} of {} rows failed and were returned as NULL (on_error='null'); the UDF's"
            + " output names the first ones",
        handler,
        errors,
        rows);
  }

  /** The meters of one UDF (handler) of one tenant. */
  private record MeterKey(String handler, String tenant) {}

  /**
   * A UDF's meters, registered on its first call and kept: a call then looks them up in one map
   * instead of building and registering four meter ids on the data path.
   */
  private record CallMeters(Counter rows, Counter batches, Counter rowErrors, Timer latency) {
    static CallMeters register(MeterRegistry meters, MeterKey k) {
      return new CallMeters(
          counter(meters, "kiln.worker.rows", "rows computed", k),
          counter(meters, "kiln.worker.batches", "batches computed", k),
          counter(
              meters,
              "kiln.worker.row.errors",
              "rows whose call failed and that were returned as NULL (on_error='null')",
              k),
          Timer.builder("kiln.worker.batch.latency")
              .description("time to compute one batch, waiting for a free runner included")
              .tag("handler", k.handler())
              .tag("tenant", k.tenant())
              .register(meters));
    }

    private static Counter counter(
        MeterRegistry meters, String name, String description, MeterKey k) {
      return Counter.builder(name)
          .description(description)
          .tag("handler", k.handler())
          .tag("tenant", k.tenant())
          .register(meters);
    }
  }

  /** Counts a failed call; the tenant its headers name is read only then, off the data path. */
  private void countError(String handler, CallContext context, String kind) {
    Counter.builder("kiln.worker.errors")
        .description("calls that failed, by error code (kind)")
        .tag("handler", handler)
        .tag("tenant", callTenant(context))
        .tag("kind", kind)
        .register(meters)
        .increment();
  }

  /** The tenant a call says it comes from, for metrics (its token is checked apart). */
  private static String callTenant(CallContext context) {
    CallHeadersMiddleware headers = context.getMiddleware(CallHeadersMiddleware.KEY);
    try {
      return Tenant.fromHeader(headers == null ? null : headers.get(Tenant.HEADER)).name();
    } catch (KilnException | IllegalArgumentException e) {
      return "invalid";
    }
  }
}
