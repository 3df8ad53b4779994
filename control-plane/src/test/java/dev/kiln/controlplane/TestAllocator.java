package dev.kiln.controlplane;

import org.apache.arrow.memory.RootAllocator;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

/**
 * A root allocator for one test that closes itself after the test, which fails the test if a buffer
 * leaked. Declare it as {@code @RegisterExtension final TestAllocator allocator = new
 * TestAllocator();} (a new test instance, so a new allocator, for every test).
 */
final class TestAllocator extends RootAllocator implements AfterEachCallback {
  @Override
  public void afterEach(ExtensionContext context) {
    close(); // fails the test if a buffer leaked
  }
}
