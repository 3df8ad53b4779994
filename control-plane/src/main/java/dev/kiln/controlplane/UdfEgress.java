package dev.kiln.controlplane;

import dev.kiln.egress.EgressPolicy;
import java.util.Objects;

/**
 * What a UDF may reach outside its sandbox, and where that allow-list is changed: the worker's
 * {@code egress} option ({@code policyFile} null), or the operator's {@code --egress-policy} file.
 *
 * @param policy the hosts it may connect to; empty: no network at all
 * @param policyFile the operator's file the list came from, or null for a worker's option
 */
record UdfEgress(EgressPolicy policy, String policyFile) {
  static final UdfEgress NONE = new UdfEgress(EgressPolicy.NONE, null);

  UdfEgress {
    Objects.requireNonNull(policy, "policy");
  }

  boolean isEmpty() {
    return policy.isEmpty();
  }

  /** What goes into the resource's key: a changed list makes a new resource (a new sandbox). */
  String keyPart() {
    return "egress=" + policy + (policyFile == null ? "" : ";from=" + policyFile);
  }
}
