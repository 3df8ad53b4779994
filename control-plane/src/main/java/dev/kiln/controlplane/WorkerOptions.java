package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.egress.EgressPolicy;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A worker's options as {@code CREATE WORKER … WITH k='v'} and {@code ALTER WORKER … SET k='v'}
 * give them, checked: {@code size} (a name of the {@link WorkerSizes} table: the sandbox's CPUs,
 * memory and runners), {@code auto_resume} ({@code true}: the next query starts a suspended worker
 * again), {@code auto_suspend} (seconds without calls before the worker's sandboxes stop; 0 =
 * never; {@link IdleSuspender} acts on it), {@code min_cluster_count} and {@code max_cluster_count}
 * (sandboxes under load), {@code gpu} (GPUs per sandbox: pods on GPU nodes, with {@code kiln serve
 * --kubernetes}), {@code egress} (the hosts its UDFs may connect to, through Kiln's egress proxy;
 * none by default: no network at all).
 *
 * @param size the size, empty for the server's own sandbox settings
 * @param autoSuspend idle time before the sandboxes stop, {@link Duration#ZERO} = never
 * @param autoResume whether a query resumes a suspended worker
 * @param minClusterCount fewest sandboxes
 * @param maxClusterCount most sandboxes
 * @param gpus GPUs per sandbox
 * @param egress the hosts its UDFs may reach ({@link EgressPolicy#NONE}: no network)
 */
record WorkerOptions(
    Optional<Sizing> size,
    Duration autoSuspend,
    boolean autoResume,
    int minClusterCount,
    int maxClusterCount,
    int gpus,
    EgressPolicy egress) {

  static final List<String> KEYS =
      List.of(
          "size",
          "auto_suspend",
          "auto_resume",
          "min_cluster_count",
          "max_cluster_count",
          "gpu",
          "egress");

  /** The most GPUs a sandbox may ask for (a node's, at most). */
  static final int MAX_GPUS = 16;

  /**
   * The options {@code raw} names (others at their defaults).
   *
   * @throws KilnException {@link ErrorCode#INVALID_WORKER_OPTION} naming every bad key or value and
   *     listing what is supported
   */
  static WorkerOptions parse(
      Map<String, String> raw, WorkerSizes sizes, Duration defaultAutoSuspend)
      throws KilnException {
    // Asked on every CreateWorker and, through the Scaler, whenever a UDF's sandboxes are all
    // busy: a worker's options are parsed once per version of them.
    Parsed key = new Parsed(Map.copyOf(raw), sizes, defaultAutoSuspend);
    WorkerOptions known = PARSED.get(key);
    if (known != null) {
      return known;
    }
    WorkerOptions parsed = parseNew(raw, sizes, defaultAutoSuspend);
    if (PARSED.size() >= MAX_PARSED) {
      PARSED.clear(); // options of workers long altered or dropped
    }
    PARSED.put(key, parsed);
    return parsed;
  }

  /** What a parse depends on. */
  private record Parsed(Map<String, String> raw, WorkerSizes sizes, Duration defaultAutoSuspend) {}

  private static final int MAX_PARSED = 4096;
  private static final Map<Parsed, WorkerOptions> PARSED = new ConcurrentHashMap<>();

  private static WorkerOptions parseNew(
      Map<String, String> raw, WorkerSizes sizes, Duration defaultAutoSuspend)
      throws KilnException {
    List<String> errors = new ArrayList<>();
    Optional<Sizing> size = Optional.empty();
    Duration autoSuspend = defaultAutoSuspend;
    boolean autoResume = true;
    int min = 1;
    int max = 1;
    int gpus = 0;
    EgressPolicy egress = EgressPolicy.NONE;
    for (Map.Entry<String, String> e : new TreeMap<>(raw).entrySet()) {
      String key = e.getKey().toLowerCase(Locale.ROOT);
      String value = e.getValue().strip();
      switch (key) {
        case "size" -> {
          size = sizes.find(value);
          if (size.isEmpty()) {
            errors.add("size '" + value + "' is not one of " + sizes.names());
          }
        }
        case "auto_suspend" -> {
          Long seconds = nonNegative(value);
          if (seconds == null) {
            errors.add("auto_suspend '" + value + "' is not a number of seconds (0 = never)");
          } else {
            autoSuspend = Duration.ofSeconds(seconds);
          }
        }
        case "auto_resume" -> {
          if (value.equalsIgnoreCase("true")) {
            autoResume = true;
          } else if (value.equalsIgnoreCase("false")) {
            autoResume = false;
          } else {
            errors.add("auto_resume '" + value + "' is not true or false");
          }
        }
        case "min_cluster_count", "max_cluster_count" -> {
          Long n = nonNegative(value);
          if (n == null || n < 1 || n > 1000) {
            errors.add(key + " '" + value + "' is not a count from 1 to 1000");
          } else if (key.equals("min_cluster_count")) {
            min = n.intValue();
          } else {
            max = n.intValue();
          }
        }
        case "gpu" -> {
          Long n = nonNegative(value);
          if (n == null || n > MAX_GPUS) {
            errors.add("gpu '" + value + "' is not a count of GPUs from 0 to " + MAX_GPUS);
          } else if (n > 0 && !sizes.pods()) {
            errors.add(
                "gpu '"
                    + value
                    + "': this server's sandboxes are local gVisor sandboxes, which have no GPUs;"
                    + " GPUs need kiln serve --kubernetes on a cluster with GPU nodes");
          } else {
            gpus = n.intValue();
          }
        }
        case "egress" -> {
          try {
            egress = EgressPolicy.parse(value);
          } catch (KilnException x) {
            errors.add(x.getMessage());
          }
        }
        default -> errors.add("'" + e.getKey() + "' is not a worker option");
      }
    }
    if (errors.isEmpty() && min > max) {
      errors.add("min_cluster_count " + min + " is more than max_cluster_count " + max);
    }
    if (!errors.isEmpty()) {
      throw new KilnException(
          ErrorCode.INVALID_WORKER_OPTION,
          "invalid worker options: "
              + String.join("; ", errors)
              + ". Supported: size ("
              + String.join(", ", sizes.names())
              + "), auto_suspend (seconds, 0 = never), auto_resume (true, false),"
              + " min_cluster_count and max_cluster_count (1 to 1000, min <= max), gpu (0 to "
              + MAX_GPUS
              + ", with kiln serve --kubernetes), egress (host patterns, comma-separated:"
              + " api.example.com, *.amazonaws.com, 10.1.2.3:443)");
    }
    return new WorkerOptions(size, autoSuspend, autoResume, min, max, gpus, egress);
  }

  private static Long nonNegative(String value) {
    try {
      long n = Long.parseLong(value);
      return n < 0 ? null : n;
    } catch (NumberFormatException e) {
      return null;
    }
  }

  /** The sandbox size these options ask for, or {@code fallback} (the server's own). */
  Sizing sizing(Sizing fallback) {
    return size.orElse(fallback).withGpus(gpus);
  }
}
