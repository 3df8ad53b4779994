package dev.kiln.worker;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.DataType;
import java.time.Duration;
import java.util.List;

/**
 * The provisioning pipeline's last step: starts a UDF's runners wherever its sandbox is (the
 * launcher says how) and waits until every one has loaded the UDF. Before anything is built, {@link
 * #checkTypes} tells whether the runners can carry a signature's types at all.
 */
public final class StartRunners {
  static final Duration START_TIMEOUT = Duration.ofSeconds(30);
  static final int OUTPUT_TAIL_LINES = 50;

  private final RunnerPool.Options options;

  /**
   * @param runners runner processes per sandbox
   * @param batchTimeout how long one batch may take
   * @param sandboxMemoryBytes the sandbox's memory, shared out among its runners
   */
  public StartRunners(int runners, Duration batchTimeout, long sandboxMemoryBytes) {
    this.options =
        new RunnerPool.Options(
            runners,
            START_TIMEOUT,
            batchTimeout,
            OUTPUT_TAIL_LINES,
            RunnerPool.Options.memoryPerRunner(sandboxMemoryBytes, runners));
  }

  /** The options every pool this step starts gets. */
  public RunnerPool.Options options() {
    return options;
  }

  /** Starts the runners and waits until they have loaded the UDF (see {@link RunnerPool#start}). */
  public RunnerPool start(UdfSignature signature, RunnerLauncher launcher)
      throws KilnException, InterruptedException {
    return RunnerPool.start(signature, launcher, options);
  }

  /**
   * Checks that runners can take every input type and return the result type.
   *
   * @throws KilnException {@link ErrorCode#UNSUPPORTED_TYPE} naming the spec field
   */
  public static void checkTypes(List<DataType> inputTypes, DataType resultType)
      throws KilnException {
    for (int i = 0; i <= inputTypes.size(); i++) {
      DataType type = i < inputTypes.size() ? inputTypes.get(i) : resultType;
      try {
        RunnerPool.requireSupported(type);
      } catch (KilnException e) {
        String field = i < inputTypes.size() ? "input_types[" + i + "]" : "result_type";
        throw new KilnException(
            ErrorCode.UNSUPPORTED_TYPE,
            "invalid UDF spec: field '" + field + "': " + e.getMessage(),
            e);
      }
    }
  }
}
