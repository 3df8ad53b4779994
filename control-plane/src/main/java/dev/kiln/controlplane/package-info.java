/**
 * The composition root: the gRPC front door ({@code ApplyUdfResource}), the provisioning {@link
 * dev.kiln.controlplane.Pipeline} (the recipe: one step per module, in order, each step owned by
 * its module), the UDF resources by tenant and key, configuration, the admin port and the {@code
 * kiln} CLI. It wires the modules and maps errors to gRPC statuses ({@link
 * dev.kiln.controlplane.GrpcErrors}); it does no domain work of its own.
 *
 * <p>Public API: {@link dev.kiln.controlplane.KilnServer}, {@link
 * dev.kiln.controlplane.KilnConfig}, {@link dev.kiln.controlplane.Kiln} (the CLI), and for tools
 * and benchmarks {@link dev.kiln.controlplane.DatabendClient}, {@link
 * dev.kiln.controlplane.ProvisioningTimings} and {@link dev.kiln.controlplane.SandboxRunners}.
 *
 * <p>Allowed dependencies: every Kiln module (never the benchmarks), gRPC, Micrometer, picocli,
 * Jackson, SLF4J/Logback. {@code ModuleBoundariesTest} checks the Kiln part.
 */
package dev.kiln.controlplane;
