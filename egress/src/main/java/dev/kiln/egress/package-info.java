/**
 * What a UDF may reach outside its sandbox, which has no network by default: a worker's allow-list
 * of host patterns ({@link dev.kiln.egress.EgressPolicy}, {@link dev.kiln.egress.EgressRule}), the
 * operator's deny list ({@link dev.kiln.egress.DenyList}), and the proxy that enforces both outside
 * the sandbox ({@link dev.kiln.egress.EgressProxy}): HTTP by its URL's host, TLS by {@code CONNECT}
 * and the ClientHello's server name, never decrypted.
 *
 * <p>Allowed dependencies: the JDK, SLF4J and {@code dev.kiln.base} (the error taxonomy). Nothing
 * here knows sandboxes, Python, Arrow or images; the control plane gives each sandbox with an
 * allow-list a network whose only way out is this proxy.
 */
package dev.kiln.egress;
