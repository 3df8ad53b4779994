/**
 * Places images in sandboxes: local gVisor sandboxes run with {@code runsc}, and pods under a
 * gVisor RuntimeClass on Kubernetes ({@link dev.kiln.provisioner.kubernetes}).
 *
 * <p>Public API: {@link dev.kiln.provisioner.Provisioner} and its implementation {@link
 * dev.kiln.provisioner.RunscProvisioner}, {@link dev.kiln.provisioner.Sandbox}, {@link
 * dev.kiln.provisioner.SandboxProcess}, and the request records {@link
 * dev.kiln.provisioner.SandboxSpec}, {@link dev.kiln.provisioner.SandboxImage} and {@link
 * dev.kiln.provisioner.Limits}. Everything else is package-private.
 *
 * <p>Allowed dependencies: the JDK, Jackson (OCI runtime documents), SLF4J, the fabric8 Kubernetes
 * client (the Kubernetes part only); on the host, {@code runsc}, GNU {@code tar}, {@code
 * mount}/{@code umount}, overlayfs and cgroups, as root. Nothing here knows Python, Arrow or how
 * images are built.
 */
package dev.kiln.provisioner;
