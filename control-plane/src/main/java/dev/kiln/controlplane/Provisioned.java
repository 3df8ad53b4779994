package dev.kiln.controlplane;

import dev.kiln.image.BuildImage;
import dev.kiln.provisioner.Sandbox;
import dev.kiln.worker.RunnerPool;

/**
 * What the provisioning pipeline made for a UDF resource: its image, the sandbox it runs in, the
 * runners that serve it, and where the time went.
 */
record Provisioned(
    BuildImage.UdfImage image, Sandbox sandbox, RunnerPool pool, ProvisioningTimings timings) {}
