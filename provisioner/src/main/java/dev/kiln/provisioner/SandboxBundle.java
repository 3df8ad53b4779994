package dev.kiln.provisioner;

import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

/**
 * The OCI bundle a Kiln sandbox runs from, for callers that drive {@code runsc} themselves (the
 * snapshot benchmark's checkpoint and restore): the same process settings, mounts and limits as a
 * sandbox this provisioner starts, so what they measure is what Kiln runs.
 */
public final class SandboxBundle {
  private SandboxBundle() {}

  /**
   * Writes {@code dir/config.json}: {@code argv} as the init, with {@code env} and {@code cwd}, as
   * the provisioner's default user, on {@code rootfs}, inside {@code limits}, with each of {@code
   * binds} (path in the sandbox → host directory) bound read-write. {@code cgroupName} names the
   * sandbox's cgroups (under {@code kiln/}). Returns {@code dir}.
   */
  public static Path write(
      Path dir,
      String cgroupName,
      List<String> argv,
      List<String> env,
      String cwd,
      Path rootfs,
      Limits limits,
      Map<String, Path> binds)
      throws IOException {
    ObjectNode config = OciSpec.config(cgroupName, process(argv, env, cwd), rootfs, limits);
    ArrayNode mounts = (ArrayNode) config.get("mounts");
    binds.forEach(
        (inSandbox, host) -> {
          ObjectNode m = mounts.addObject();
          m.put("destination", inSandbox);
          m.put("type", "bind");
          m.put("source", host.toString());
          m.putArray("options").add("rbind").add("rw");
        });
    OciSpec.write(config, Files.createDirectories(dir).resolve("config.json"));
    return dir;
  }

  /**
   * Writes {@code file}: the process {@code runsc exec --process} starts, as the provisioner's own
   * exec does ({@code argv} with {@code env} and {@code cwd}, as the default user). Returns it.
   */
  public static Path writeProcess(Path file, List<String> argv, List<String> env, String cwd)
      throws IOException {
    OciSpec.write(OciSpec.process(process(argv, env, cwd)), file);
    return file;
  }

  private static OciSpec.ProcessSpec process(List<String> argv, List<String> env, String cwd) {
    return new OciSpec.ProcessSpec(
        argv,
        env,
        cwd == null || cwd.isEmpty() ? "/" : cwd,
        RunscProvisioner.DEFAULT_USER,
        RunscProvisioner.DEFAULT_USER);
  }
}
