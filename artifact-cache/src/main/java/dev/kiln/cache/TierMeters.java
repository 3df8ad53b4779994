package dev.kiln.cache;

import io.micrometer.core.instrument.FunctionCounter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.LongAdder;
import java.util.function.LongSupplier;

/**
 * The counters of one tier. They live in plain adders that {@link CacheStats} reads, and are
 * exported to Micrometer as function counters, so the stats are right whatever registry (even a
 * no-op one) the cache was opened with.
 */
final class TierMeters {
  final String tier;
  final LongAdder hits = new LongAdder();
  final LongAdder misses = new LongAdder();
  final LongAdder bytesRead = new LongAdder();
  final LongAdder bytesWritten = new LongAdder();
  final LongAdder evictions = new LongAdder();
  final LongAdder corrupt = new LongAdder();
  private final LongAdder hitNanos = new LongAdder();
  private final Timer latency;
  private final List<Meter> registered;

  TierMeters(String tier, MeterRegistry registry, LongSupplier sizeBytes) {
    this.tier = tier;
    latency =
        Timer.builder("kiln.cache.latency")
            .tag("tier", tier)
            .description("Time to answer a cache hit from this tier")
            .register(registry);
    registered =
        List.of(
            latency,
            FunctionCounter.builder("kiln.cache.hits", hits, LongAdder::sum)
                .tag("tier", tier)
                .description("Cache reads answered by this tier")
                .register(registry),
            FunctionCounter.builder("kiln.cache.misses", misses, LongAdder::sum)
                .tag("tier", tier)
                .description("Cache reads this tier could not answer")
                .register(registry),
            FunctionCounter.builder("kiln.cache.bytes", bytesRead, LongAdder::sum)
                .tag("tier", tier)
                .tag("direction", "read")
                .baseUnit("bytes")
                .description("Bytes read from or written to this tier")
                .register(registry),
            FunctionCounter.builder("kiln.cache.bytes", bytesWritten, LongAdder::sum)
                .tag("tier", tier)
                .tag("direction", "write")
                .baseUnit("bytes")
                .description("Bytes read from or written to this tier")
                .register(registry),
            FunctionCounter.builder("kiln.cache.evictions", evictions, LongAdder::sum)
                .tag("tier", tier)
                .description("Blobs evicted from this tier to stay under its size bound")
                .register(registry),
            FunctionCounter.builder("kiln.cache.corrupt", corrupt, LongAdder::sum)
                .tag("tier", tier)
                .description("Stored blobs that did not match their digest and were discarded")
                .register(registry),
            Gauge.builder("kiln.cache.size.bytes", sizeBytes, s -> (double) s.getAsLong())
                .tag("tier", tier)
                .strongReference(true)
                .baseUnit("bytes")
                .description("Bytes held by this tier (-1: unknown, e.g. a shared bucket)")
                .register(registry));
  }

  void hit(long startNanos, long bytes) {
    long nanos = System.nanoTime() - startNanos;
    hits.increment();
    bytesRead.add(bytes);
    hitNanos.add(nanos);
    latency.record(nanos, TimeUnit.NANOSECONDS);
  }

  void miss() {
    misses.increment();
  }

  void wrote(long bytes) {
    bytesWritten.add(bytes);
  }

  TierStats stats(long entries, long sizeBytes) {
    long h = hits.sum();
    return new TierStats(
        tier,
        h,
        misses.sum(),
        bytesRead.sum(),
        bytesWritten.sum(),
        evictions.sum(),
        entries,
        sizeBytes,
        h == 0 ? 0 : hitNanos.sum() / 1e6 / h);
  }

  /** Removes this tier's meters, so a cache opened later on the same registry reports its own. */
  void unregister(MeterRegistry registry) {
    registered.forEach(registry::remove);
  }
}
