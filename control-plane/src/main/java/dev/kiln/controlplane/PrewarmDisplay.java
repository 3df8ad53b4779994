package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * What {@code kiln prewarm} shows on stderr while a UDF is prewarmed: a progress bar per UDF on a
 * terminal (its pipeline step, the bytes of wheels fetched), a line per step otherwise (CI logs).
 * It reads the reports of {@link UdfProgress}, from the server in process or streamed from its
 * admin port.
 */
abstract sealed class PrewarmDisplay permits PrewarmDisplay.Bars, PrewarmDisplay.Lines {

  /** How progress is shown: {@code auto} is bars when stderr is a terminal, lines otherwise. */
  enum Mode {
    AUTO,
    BARS,
    LINES
  }

  final PrintStream err;

  private PrewarmDisplay(PrintStream err) {
    this.err = err;
  }

  static PrewarmDisplay of(Mode mode, PrintStream err) {
    boolean bars = mode == Mode.BARS || (mode == Mode.AUTO && stderrIsTerminal());
    return bars ? new Bars(err) : new Lines(err);
  }

  /** A UDF's prewarm begins; {@code source} is its {@code file:line}. */
  abstract void begin(String source, String name);

  /** A report of its progress ({@link UdfProgress#report}) while it starts. */
  abstract void update(JsonNode report);

  /** It ended, warm or failed (the result is printed on stdout after this). */
  abstract void end(boolean warm);

  /** A line about the whole run. */
  void say(String line) {
    err.println("kiln prewarm: " + line);
  }

  /** "resolving packages", and the bytes fetched once there are any. */
  static String doing(JsonNode report) {
    String doing = report.path("doing").asText(report.path("step").asText());
    long bytes = report.path("fetched_bytes").asLong();
    return bytes == 0 ? doing : "%s (%s fetched)".formatted(doing, megabytes(bytes));
  }

  static String megabytes(long bytes) {
    return String.format(Locale.ROOT, "%.1f MB", bytes / 1e6);
  }

  /** Linux: whether file descriptor 2 is a terminal (a tty or pseudo-terminal device). */
  private static boolean stderrIsTerminal() {
    if ("dumb".equals(System.getenv("TERM"))) {
      return false;
    }
    try {
      String target = Files.readSymbolicLink(Path.of("/proc/self/fd/2")).toString();
      return target.startsWith("/dev/pts/") || target.startsWith("/dev/tty");
    } catch (java.io.IOException | UnsupportedOperationException e) {
      return false;
    }
  }

  /**
   * A progress bar per UDF, named after it: its steps done, the current one and the bytes fetched
   * beside it.
   */
  static final class Bars extends PrewarmDisplay {
    private ProgressBar bar;

    Bars(PrintStream err) {
      super(err);
    }

    @Override
    void begin(String source, String name) {
      bar =
          new ProgressBarBuilder()
              .setTaskName(name)
              .setInitialMax(UdfProgress.Step.values().length)
              .setStyle(ProgressBarStyle.ASCII)
              .setUnit(" steps", 1)
              .setUpdateIntervalMillis(100)
              .hideEta()
              .setConsumer(new me.tongfei.progressbar.ConsoleProgressBarConsumer(err))
              .build();
    }

    @Override
    void update(JsonNode report) {
      // Short, so that the bar keeps its width on an 80-column terminal: "wheels 16.9 MB".
      String step = report.path("step").asText();
      long bytes = report.path("fetched_bytes").asLong();
      boolean fetching = step.equals(UdfProgress.Step.WHEELS.id()) && bytes > 0;
      // The message before the step: the bar renders only when its count moves, on its own timer
      // too, and a render between the two would show the new step without its message for good.
      bar.setExtraMessage(fetching ? step + " " + megabytes(bytes) : step);
      bar.stepTo(Math.max(0, report.path("step_number").asInt(1) - 1));
      bar.refresh();
    }

    @Override
    void end(boolean warm) {
      bar.setExtraMessage(warm ? "warm" : "FAILED"); // before the step, as in update
      if (warm) {
        bar.stepTo(bar.getMax());
      }
      bar.close();
      bar = null;
    }
  }

  /** A line whenever a UDF moves to another step, for logs. */
  static final class Lines extends PrewarmDisplay {
    private String where;
    private String step;

    Lines(PrintStream err) {
      super(err);
    }

    @Override
    void begin(String source, String name) {
      this.where = source + " " + name;
      this.step = null;
      say(where + ": prewarming ...");
    }

    @Override
    void update(JsonNode report) {
      String now = report.path("doing").asText();
      if (!now.equals(step)) {
        step = now;
        say(
            "%s: step %d of %d, %s"
                .formatted(
                    where,
                    report.path("step_number").asInt(),
                    report.path("steps").asInt(),
                    doing(report)));
      }
    }

    @Override
    void end(boolean warm) {
      where = null;
    }
  }
}
