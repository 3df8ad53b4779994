package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.time.Duration;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Where a UDF resource's provisioning is: the pipeline step it runs and the bytes of wheels fetched
 * so far. The pipeline moves it along; {@code kiln prewarm} shows it, in process or streamed from
 * the admin port ({@code /udfs/<key>/progress}), as the same JSON ({@link #report}).
 */
final class UdfProgress {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** How often a watch looks for a change it has not been woken for (the fetched bytes). */
  private static final Duration INTERVAL = Duration.ofMillis(100);

  /** The pipeline's steps, in order; a warm start skips the image and the sandbox. */
  enum Step {
    PACKAGES("resolving packages"),
    WHEELS("fetching imports and wheels"),
    IMAGE("building the image"),
    SANDBOX("starting the sandbox"),
    RUNNERS("starting the runners");

    final String doing;

    Step(String doing) {
      this.doing = doing;
    }

    /** Its name in the JSON: {@code packages}, {@code wheels}, ... */
    String id() {
      return name().toLowerCase(java.util.Locale.ROOT);
    }
  }

  private volatile Step step = Step.PACKAGES;
  private final AtomicLong fetchedBytes = new AtomicLong();

  /** The pipeline begins {@code next}. */
  void enter(Step next) {
    step = next;
  }

  long fetchedBytes() {
    return fetchedBytes.get();
  }

  /** {@code out}, counting what is written to it as fetched bytes. */
  OutputStream counting(OutputStream out) {
    return new FilterOutputStream(out) {
      @Override
      public void write(int b) throws IOException {
        out.write(b);
        fetchedBytes.incrementAndGet();
      }

      @Override
      public void write(byte[] b, int off, int len) throws IOException {
        out.write(b, off, len);
        fetchedBytes.addAndGet(len);
      }
    };
  }

  /**
   * The resource's progress as {@code kiln prewarm} reads it: {@code state} is {@code starting}
   * (with {@code step}, its number of {@code steps}, and {@code fetched_bytes}), {@code ready}
   * (with {@code image_digest}, {@code lock} as {@code name==version}, {@code warm_sandbox}, {@code
   * image_built_here} and {@code step_seconds}; {@code image_error} and its {@code
   * image_error_code} when the image built after a warm start failed) or {@code failed} (with
   * {@code code} and {@code error}, the message a query would get). After a warm start the image is
   * built in the background: the resource reports the image step until it is built.
   */
  static ObjectNode report(UdfResource r) {
    ObjectNode n = JSON.createObjectNode();
    n.put("key", r.key.hex());
    UdfProgress p = r.progress;
    KilnException failure = r.failure();
    if (failure != null) {
      n.put("state", "failed");
      n.put("code", failure.code().name());
      n.put("error", failure.getMessage());
      return n;
    }
    Provisioned done = r.provisioned().orElse(null);
    if (done == null || !done.imageDone() || !r.pushedImage.isDone()) {
      Step step = done == null ? p.step : Step.IMAGE;
      n.put("state", "starting");
      n.put("step", step.id());
      n.put("step_number", step.ordinal() + 1);
      n.put("steps", Step.values().length);
      n.put(
          "doing",
          done == null
              ? step.doing
              : done.imageDone()
                  ? "pushing the image to the registry"
                  : "building the image after a warm start");
      n.put("fetched_bytes", p.fetchedBytes());
      return n;
    }
    n.put("state", "ready");
    n.put("warm_sandbox", done.warm());
    // With Kiln replicas on Kubernetes, one builds each image and the others run it.
    n.put("image_built_here", done.adopted() == null);
    // The local layout's digest; none when another replica built the image (see image_reference).
    n.put(
        "image_digest",
        done.builtImage().map(i -> i.image().manifestDigest().toString()).orElse(null));
    if (done.adopted() == null && done.image().isCompletedExceptionally()) {
      // It serves from its warm sandbox; another sandbox of it cannot start until a build succeeds.
      Throwable t = done.image().exceptionNow();
      n.put("image_error", t.getMessage() == null ? t.toString() : t.getMessage());
      n.put(
          "image_error_code",
          (t instanceof KilnException k ? k.code() : ErrorCode.IMAGE_BUILD_FAILED).name());
    }
    if (r.pushedImage.isCompletedExceptionally()) {
      // It serves here; a Kubernetes pod of it cannot start until a push succeeds.
      Throwable t = r.pushedImage.exceptionNow();
      n.put("image_push_error", t.getMessage() == null ? t.toString() : t.getMessage());
    } else {
      r.pushedImage.join().ifPresent(ref -> n.put("image_reference", ref));
    }
    done.lock().forEach(n.putArray("lock")::add);
    ProvisioningTimings t = done.timings();
    ObjectNode steps = n.putObject("step_seconds");
    steps.put(Step.PACKAGES.id(), t.packagesMillis() / 1e3);
    steps.put(Step.WHEELS.id(), t.inputsMillis() / 1e3);
    steps.put(Step.IMAGE.id(), t.imageMillis() / 1e3);
    steps.put(Step.SANDBOX.id(), t.sandboxMillis() / 1e3);
    steps.put(Step.RUNNERS.id(), t.runnersMillis() / 1e3);
    n.put("fetched_bytes", p.fetchedBytes());
    return n;
  }

  /** Whether a report is the last one: the resource is ready or failed. */
  static boolean isFinal(JsonNode report) {
    return !report.path("state").asText().equals("starting");
  }

  /**
   * The reports of a resource as they change, until it is ready or failed, or {@code timeout}
   * passed (that last report then says {@code starting}).
   */
  static Watch watch(UdfResource r, Duration timeout) {
    return new Watch(r, System.nanoTime() + timeout.toNanos());
  }

  /** Reports of one resource, each different from the one before; see {@link #watch}. */
  static final class Watch {
    private final UdfResource r;
    private final long deadlineNanos;
    private String last;
    private boolean ended;

    private Watch(UdfResource r, long deadlineNanos) {
      this.r = r;
      this.deadlineNanos = deadlineNanos;
    }

    /** The next report (the first at once), or null after the last. */
    ObjectNode next() throws InterruptedException {
      while (!ended) {
        ObjectNode report = report(r);
        ended = isFinal(report) || System.nanoTime() - deadlineNanos > 0;
        String text = report.toString();
        if (ended || !text.equals(last)) {
          last = text;
          return report;
        }
        awaitChange();
      }
      return null;
    }

    /** Returns when the resource is ready (or its image built), or after {@link #INTERVAL}. */
    private void awaitChange() throws InterruptedException {
      Future<?> next =
          r.provisioned()
              .<Future<?>>map(p -> p.imageDone() ? r.pushedImage : p.image())
              .orElse(r.ready());
      try {
        next.get(INTERVAL.toMillis(), TimeUnit.MILLISECONDS);
      } catch (ExecutionException | TimeoutException | CancellationException e) {
        // a failure shows in the next report; no change yet is what the interval is for
      }
    }
  }
}
