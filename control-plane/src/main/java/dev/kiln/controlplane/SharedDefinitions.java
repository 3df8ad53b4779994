package dev.kiln.controlplane;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.util.Optional;

/**
 * The UDF definitions every Kiln replica can read: with {@code --kubernetes}, each kept in its
 * {@code UdfWorker}, so that a Flight call reaching a replica that did not answer the request still
 * finds what to run; {@link #NONE} on a single server, whose data directory is enough.
 */
interface SharedDefinitions {

  /** Nothing shared: a single server. */
  SharedDefinitions NONE =
      new SharedDefinitions() {
        @Override
        public void put(Definitions.Entry e) {}

        @Override
        public Optional<Definitions.Entry> get(Tenant tenant, ContentKey key) {
          return Optional.empty();
        }

        @Override
        public void removeOwned(Tenant tenant, String owner) {}
      };

  /**
   * Keeps {@code e} where every replica reads it (a record already there is kept); logs, and does
   * not throw, when it cannot: this replica still serves it.
   */
  void put(Definitions.Entry e);

  /** The record another replica kept for the tenant's key, if any. */
  Optional<Definitions.Entry> get(Tenant tenant, ContentKey key);

  /** Forgets the records of the tenant's worker {@code owner} (DROP WORKER). */
  void removeOwned(Tenant tenant, String owner);
}
