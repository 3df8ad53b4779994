package dev.kiln.controlplane;

/**
 * Where a UDF resource's cold start went, in milliseconds, one figure per pipeline step: packages
 * resolved, imports and wheels fetched, image built (or found), sandbox started until its init was
 * ready, runners started until the UDF was loaded; and the total from the first request to ready
 * runners.
 */
public record ProvisioningTimings(
    double packagesMillis,
    double inputsMillis,
    double imageMillis,
    double sandboxMillis,
    double runnersMillis,
    double totalMillis) {}
