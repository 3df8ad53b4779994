package dev.kiln.controlplane;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;

/** A front door's requests by result: hot (known), cold (provisioning started), error. */
record RequestCounters(Counter hot, Counter cold, Counter rejected) {

  /** The counters {@code name}{result=hot|cold|error} of requests to {@code rpc}. */
  static RequestCounters register(MeterRegistry meters, String name, String rpc) {
    return new RequestCounters(
        counter(meters, name, rpc, "hot"),
        counter(meters, name, rpc, "cold"),
        counter(meters, name, rpc, "error"));
  }

  private static Counter counter(MeterRegistry meters, String name, String rpc, String result) {
    return Counter.builder(name)
        .description(rpc + " requests by result: hot (known), cold (provisioning started), error")
        .tag("result", result)
        .register(meters);
  }
}
