package dev.kiln.worker;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A {@link UdfDirectory} over a map, the shape the control plane implements: the contract is small
 * enough that the test version is the real thing.
 */
final class MapDirectory implements UdfDirectory {

  private record Entry(String tenant, ContentKey key) {}

  /** A handle whose readiness the test controls; counts how often a call asked for it. */
  static final class Handle implements UdfHandle {
    final UdfSignature signature;
    final CompletableFuture<RunnerPool> ready = new CompletableFuture<>();
    final AtomicInteger readyCalls = new AtomicInteger();

    Handle(UdfSignature signature) {
      this.signature = signature;
    }

    @Override
    public UdfSignature signature() {
      return signature;
    }

    @Override
    public CompletableFuture<RunnerPool> ready() {
      readyCalls.incrementAndGet();
      return ready;
    }
  }

  private final Map<Entry, UdfHandle> handles = new ConcurrentHashMap<>();

  void put(String tenant, ContentKey key, UdfHandle handle) {
    handles.put(new Entry(tenant, key), handle);
  }

  @Override
  public Optional<UdfHandle> find(Tenant tenant, ContentKey key) {
    return Optional.ofNullable(handles.get(new Entry(tenant.name(), key)));
  }
}
