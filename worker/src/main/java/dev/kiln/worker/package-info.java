/**
 * The data path: the Arrow Flight endpoint Databend calls (its server-UDF protocol, tokens bound to
 * a tenant, routing to a UDF's runners), starting a UDF's runners, the runner pool that slices
 * batches across them, and the in-sandbox Python runner (standard library only, a resource of this
 * module) with the columnar wire between the two (PROTOCOL.md beside the runner).
 *
 * <p>Public API: {@link dev.kiln.worker.FlightEndpoint}, {@link dev.kiln.worker.Tokens}, {@link
 * dev.kiln.worker.StartRunners} (the pipeline's step) and {@link dev.kiln.worker.RunnerPool},
 * {@link dev.kiln.worker.RunnerFiles} (what an image needs to carry the runner), the interfaces the
 * control plane implements ({@link dev.kiln.worker.UdfDirectory}, {@link
 * dev.kiln.worker.UdfHandle}, {@link dev.kiln.worker.RunnerLauncher}, {@link
 * dev.kiln.worker.RunnerProcess}), {@link dev.kiln.worker.UdfSignature} and {@link
 * dev.kiln.worker.ArrowTypes}. Errors map to Flight statuses in one place ({@code FlightErrors}).
 * Everything else is package-private.
 *
 * <p>Allowed dependencies: {@code dev.kiln.base}, {@code dev.kiln.definition} (types, content keys,
 * tenants), Arrow Flight and vectors, gRPC/Netty, Jackson, Micrometer, SLF4J. Nothing here knows
 * how images are built or sandboxes placed, nor Python packaging.
 */
package dev.kiln.worker;
