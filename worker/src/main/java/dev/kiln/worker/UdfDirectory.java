package dev.kiln.worker;

import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.util.Optional;

/** Finds the UDF a verified token grants. Implemented by the control plane. */
@FunctionalInterface
public interface UdfDirectory {

  /** The tenant's UDF with this key, or empty when this server does not know it. */
  Optional<UdfHandle> find(Tenant tenant, ContentKey key);
}
