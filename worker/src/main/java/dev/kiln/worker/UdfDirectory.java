package dev.kiln.worker;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.Tenant;
import java.util.Optional;

/** Finds the UDF a verified token grants. Implemented by the control plane. */
@FunctionalInterface
public interface UdfDirectory {

  /**
   * The tenant's UDF with this key, or empty when this server never answered for it. A UDF it knows
   * but is not running (stopped, suspended, lost with its sandbox, or from before a restart) is
   * started again and returned at once; its {@link UdfHandle#ready()} completes when it is up.
   *
   * @throws KilnException when the UDF is known but must not run now (its worker is suspended or
   *     dropped); the message says what to do
   */
  Optional<UdfHandle> find(Tenant tenant, ContentKey key) throws KilnException;
}
