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

  private final Duration batchTimeout;

  /**
   * @param batchTimeout how long one batch may take
   */
  public StartRunners(Duration batchTimeout) {
    this.batchTimeout = batchTimeout;
  }

  /**
   * The options a pool of {@code runners} runners sharing {@code sandboxMemoryBytes} gets: each a
   * share of the memory, 30 s to start, the batch timeout.
   */
  public RunnerPool.Options options(int runners, long sandboxMemoryBytes) {
    return new RunnerPool.Options(
        runners,
        START_TIMEOUT,
        batchTimeout,
        OUTPUT_TAIL_LINES,
        RunnerPool.Options.memoryPerRunner(sandboxMemoryBytes, runners));
  }

  /**
   * Starts {@code runners} runners sharing {@code sandboxMemoryBytes} and waits until they have
   * loaded the UDF (see {@link RunnerPool#start}).
   */
  public RunnerPool start(
      UdfSignature signature, RunnerLauncher launcher, int runners, long sandboxMemoryBytes)
      throws KilnException, InterruptedException {
    return RunnerPool.start(signature, launcher, options(runners, sandboxMemoryBytes));
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
