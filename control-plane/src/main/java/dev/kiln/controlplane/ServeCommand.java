package dev.kiln.controlplane;

import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/** {@code kiln serve}: runs the control plane until SIGTERM or SIGINT. */
@Command(
    name = "serve",
    mixinStandardHelpOptions = true,
    description = {
      "Starts Kiln: the provisioning API (gRPC), the Flight endpoint and the admin port.",
      "With no flags it runs everything on this machine: images in the data directory,",
      "sandboxes with local gVisor (runsc)."
    })
final class ServeCommand implements Callable<Integer> {

  @Option(names = "--config", paramLabel = "FILE",
      description = "YAML file whose keys are these flags' long names (e.g. grpc-port: 50051).")
  Path configFile;

  @Option(names = "--grpc-port", paramLabel = "PORT",
      description = "Provisioning API port (default 50051).")
  String grpcPort;

  @Option(names = "--flight-port", paramLabel = "PORT",
      description = "Arrow Flight endpoint port (default 8815).")
  String flightPort;

  @Option(names = "--admin-port", paramLabel = "PORT",
      description = "Port of /healthz and /metrics (default 9090).")
  String adminPort;

  @Option(names = "--data-dir", paramLabel = "DIR", description = "Data directory (default ./.kiln).")
  String dataDir;

  @Option(names = "--base-image", paramLabel = "IMAGE",
      description = "Python base image: an image archive (bin/build-base-image writes one) or a"
          + " registry reference such as python:3.12-slim.")
  String baseImage;

  @Option(names = "--bind-host", paramLabel = "HOST",
      description = "Address to listen on (default 0.0.0.0).")
  String bindHost;

  @Option(names = "--advertise-host", paramLabel = "HOST",
      description = "Host name put in the endpoint given to Databend (default 127.0.0.1).")
  String advertiseHost;

  @Option(names = "--sandbox-memory", paramLabel = "SIZE",
      description = "Memory limit of each sandbox (default 512MiB).")
  String sandboxMemory;

  @Option(names = "--sandbox-cpus", paramLabel = "N",
      description = "CPU limit of each sandbox in cores (default 1).")
  String sandboxCpus;

  @Option(names = "--batch-timeout", paramLabel = "DURATION",
      description = "Longest a UDF may take on one batch (default 300s).")
  String batchTimeout;

  @Option(names = "--runsc", paramLabel = "PATH", description = "The runsc binary (default runsc).")
  String runsc;

  @Option(names = "--runsc-platform", paramLabel = "NAME",
      description = "gVisor platform: ptrace (default), systrap or kvm.")
  String runscPlatform;

  @Override
  public Integer call() throws Exception {
    KilnConfig.Builder builder = KilnConfig.builder();
    if (configFile != null) {
      builder.load(configFile);
    }
    Map<String, String> flags = new LinkedHashMap<>();
    flags.put("grpc-port", grpcPort);
    flags.put("flight-port", flightPort);
    flags.put("admin-port", adminPort);
    flags.put("data-dir", dataDir);
    flags.put("base-image", baseImage);
    flags.put("bind-host", bindHost);
    flags.put("advertise-host", advertiseHost);
    flags.put("sandbox-memory", sandboxMemory);
    flags.put("sandbox-cpus", sandboxCpus);
    flags.put("batch-timeout", batchTimeout);
    flags.put("runsc", runsc);
    flags.put("runsc-platform", runscPlatform);
    KilnConfig config;
    try {
      flags.forEach((k, v) -> {
        if (v != null) {
          builder.set(k, v);
        }
      });
      config = builder.build();
    } catch (IllegalArgumentException | KilnException e) {
      System.err.println("kiln serve: " + e.getMessage());
      return 2;
    }
    KilnServer server;
    try {
      server = KilnServer.start(config);
    } catch (KilnException e) {
      System.err.println("kiln serve: " + e.getMessage());
      return 1;
    }
    Thread hook = new Thread(server::close, "kiln-shutdown");
    Runtime.getRuntime().addShutdownHook(hook);
    server.awaitTermination();
    return 0;
  }
}
