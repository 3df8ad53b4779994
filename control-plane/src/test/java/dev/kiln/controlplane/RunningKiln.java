package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import java.io.IOException;
import java.nio.file.Path;
import java.util.function.UnaryOperator;

/**
 * A Kiln server started on a test's data directory ({@link KilnTestSupport#testConfig}) and a
 * Databend-like client of it. Closing stops both and then fails if the server left a sandbox
 * running or a mount behind under the data directory.
 */
final class RunningKiln implements AutoCloseable {
  private final Path dataDir;
  private final KilnServer server;
  private final DatabendClient api;

  private RunningKiln(Path dataDir, KilnServer server, DatabendClient api) {
    this.dataDir = dataDir;
    this.server = server;
    this.api = api;
  }

  /** Starts a server with the test configuration as it is. */
  static RunningKiln start(Path dataDir) throws KilnException, IOException {
    return start(dataDir, config -> config);
  }

  /** Starts a server with the test configuration as {@code customize} changes it. */
  static RunningKiln start(Path dataDir, UnaryOperator<KilnConfigBuilder> customize)
      throws KilnException, IOException {
    KilnServer server =
        KilnServer.start(customize.apply(KilnTestSupport.testConfig(dataDir)).build());
    try {
      return new RunningKiln(dataDir, server, KilnTestSupport.client(server));
    } catch (RuntimeException e) {
      server.close();
      throw e;
    }
  }

  KilnServer server() {
    return server;
  }

  DatabendClient api() {
    return api;
  }

  Path dataDir() {
    return dataDir;
  }

  @Override
  public void close() throws IOException, InterruptedException {
    try {
      api.close();
    } finally {
      server.close();
    }
    KilnTestSupport.assertNothingLeftBehind(dataDir);
  }
}
