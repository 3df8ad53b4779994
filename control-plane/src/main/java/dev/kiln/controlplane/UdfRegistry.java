package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import java.util.function.Supplier;

/**
 * The UDF resources this server knows, by (tenant, content key). Obtaining a resource that does not
 * exist yet creates it and starts its provisioning exactly once, however many requests arrive at
 * the same time (single flight per key and tenant).
 */
final class UdfRegistry implements AutoCloseable {
  private record Id(Tenant tenant, ContentKey key) {}

  /** What {@link #obtain} found or made. */
  record Obtained(UdfResource resource, boolean created) {}

  private final ConcurrentHashMap<Id, UdfResource> resources = new ConcurrentHashMap<>();
  private final Consumer<UdfResource> provisioner;
  private volatile boolean closed;

  UdfRegistry(Consumer<UdfResource> provisioner) {
    this.provisioner = provisioner;
  }

  /**
   * The tenant's resource for this key, made by {@code make} (and provisioned) when there is none
   * or the one there is stale.
   */
  Obtained obtain(Tenant tenant, ContentKey key, Supplier<UdfResource> make) throws KilnException {
    if (closed) {
      throw new KilnException(ErrorCode.SHUTTING_DOWN, "Kiln is shutting down; retry shortly");
    }
    Id id = new Id(tenant, key);
    UdfResource existing = resources.get(id);
    if (existing != null && !existing.isStale()) {
      return new Obtained(existing, false); // the hot path: one map lookup
    }
    UdfResource[] made = new UdfResource[1];
    UdfResource[] replaced = new UdfResource[1];
    UdfResource current =
        resources.compute(
            id,
            (k, old) -> {
              if (old != null && !old.isStale()) {
                return old;
              }
              replaced[0] = old;
              made[0] = make.get();
              return made[0];
            });
    if (replaced[0] != null) {
      replaced[0].close();
    }
    if (made[0] != null) {
      provisioner.accept(made[0]);
      return new Obtained(current, true);
    }
    return new Obtained(current, false);
  }

  /**
   * Stops the resources of the tenant's worker {@code owner} whose key is not {@code keep} (null:
   * all of them); returns how many.
   */
  int evictOwned(Tenant tenant, String owner, ContentKey keep) {
    int n = 0;
    for (UdfResource r : all()) {
      if (r.tenant.equals(tenant) && owner.equals(r.owner) && !r.key.equals(keep)) {
        evict(r);
        n++;
      }
    }
    return n;
  }

  /** The tenant's resource for the key, if there is one. */
  Optional<UdfResource> get(Tenant tenant, ContentKey key) {
    return Optional.ofNullable(resources.get(new Id(tenant, key)));
  }

  /** Forgets the tenant's resource for the key, if there is one, and stops it. */
  void evict(Tenant tenant, ContentKey key) {
    UdfResource r = resources.remove(new Id(tenant, key));
    if (r != null) {
      r.close();
    }
  }

  /** Forgets a resource (if it is still the registered one) and stops it. */
  void evict(UdfResource r) {
    resources.remove(new Id(r.tenant, r.key), r);
    r.close();
  }

  Collection<UdfResource> all() {
    return List.copyOf(resources.values());
  }

  int size() {
    return resources.size();
  }

  @Override
  public void close() {
    closed = true;
    List<UdfResource> all = new ArrayList<>(resources.values());
    resources.clear();
    all.parallelStream().forEach(UdfResource::close);
  }
}
