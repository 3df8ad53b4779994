package dev.kiln.worker;

import dev.kiln.base.KilnException;
import java.util.concurrent.CompletableFuture;

/** A UDF resource as the endpoint sees it: its signature, and its runners once they are up. */
public interface UdfHandle {

  UdfSignature signature();

  /**
   * Completes with the runner pool once the sandbox and its runners are ready, or exceptionally
   * with a {@link KilnException} whose message is meant for the user.
   */
  CompletableFuture<RunnerPool> ready();

  /**
   * The runners the next batch goes to, given those {@link #ready} completed with: the same by
   * default; a UDF running in several sandboxes picks the least busy (and may start another when
   * all are busy).
   */
  default RunnerPool next(RunnerPool ready) {
    return ready;
  }
}
