package dev.kiln.controlplane;

/**
 * Where a UDF resource's cold start went, in milliseconds: image build (or lookup), sandbox start
 * until its init was ready, runner start until the UDF was loaded, and the total from the first
 * ApplyUdfResource to ready runners.
 */
public record ProvisioningTimings(
    double imageMillis, double sandboxMillis, double runnersMillis, double totalMillis) {}
