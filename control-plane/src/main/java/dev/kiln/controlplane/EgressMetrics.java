package dev.kiln.controlplane;

import dev.kiln.egress.EgressProxy;
import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.List;

/**
 * The egress proxy's bytes per worker as Prometheus counters, {@code
 * kiln_egress_bytes_total{tenant,worker,direction}}: in {@code kiln serve}'s registry and in {@code
 * kiln egress}'s own.
 */
final class EgressMetrics {
  private EgressMetrics() {}

  /** Counters for {@code worker}'s traffic through {@code proxy} (registered once; idempotent). */
  static void count(MeterRegistry meters, EgressProxy proxy, EgressProxy.Worker worker) {
    for (String direction : List.of("sent", "received")) {
      FunctionCounter.builder(
              "kiln.egress.bytes",
              proxy,
              p -> {
                EgressProxy.Traffic t = p.traffic(worker.tenant(), worker.worker());
                return direction.equals("sent") ? t.sent() : t.received();
              })
          .description("bytes a worker's UDFs sent out and received through the egress proxy")
          .tag("tenant", worker.tenant())
          .tag("worker", worker.worker())
          .tag("direction", direction)
          .register(meters);
    }
  }

  /** Counters for every worker whose traffic went through {@code proxy} so far. */
  static void countAll(MeterRegistry meters, EgressProxy proxy) {
    proxy.workers().forEach(w -> count(meters, proxy, w));
  }
}
