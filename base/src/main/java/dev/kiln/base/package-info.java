/**
 * What every Kiln module shares, and nothing else: the one error taxonomy ({@link
 * dev.kiln.base.ErrorCode}, raised as {@link dev.kiln.base.KilnException}) and {@link
 * dev.kiln.base.SingleFlight}, one computation per key.
 *
 * <p>Allowed dependencies: the JDK only. Mapping a code to a wire status is the job of each edge
 * (the control plane's gRPC services, the worker's Flight endpoint), in one place each.
 */
package dev.kiln.base;
