/**
 * Python packaging, and nothing else: PEP 508 requirements, PEP 440 versions and specifiers, the
 * package index client (PEP 503/691, PEP 658 metadata, PEP 714), wheel file names (PEP 427) and
 * backtracking resolution to an exact {@link dev.kiln.resolver.Lock} for a {@link
 * dev.kiln.resolver.TargetEnvironment} (the Python of a base image).
 *
 * <p>Public API: {@link dev.kiln.resolver.ResolvePackages} (the pipeline's step), {@link
 * dev.kiln.resolver.PackageResolver} with {@link dev.kiln.resolver.IndexConfig}, the values {@link
 * dev.kiln.resolver.Lock}, {@link dev.kiln.resolver.LockedPackage}, {@link
 * dev.kiln.resolver.TargetEnvironment}, {@link dev.kiln.resolver.Requirement}, {@link
 * dev.kiln.resolver.Version}, {@link dev.kiln.resolver.SpecifierSet} and {@link
 * dev.kiln.resolver.WheelFilename}. Errors are {@link dev.kiln.base.KilnException}s (invalid
 * requirement, no such package, no compatible wheel, conflict, index unavailable, …). Everything
 * else is package-private.
 *
 * <p>Allowed dependencies: {@code dev.kiln.base}, Jackson (JSON), jsoup (HTML index pages), the
 * JDK's HTTP client. Nothing here knows Databend, images, sandboxes or gRPC.
 */
package dev.kiln.resolver;
