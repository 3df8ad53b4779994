package dev.kiln.controlplane;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The worker sizes a {@code size} option may name, each a sandbox's CPUs, memory and runner
 * processes. The defaults ({@link #DEFAULTS}) are replaced or extended by {@code --worker-size
 * NAME=CPUS,MEMORY,RUNNERS} (e.g. {@code medium=2,1GiB,2}). Whether a worker's {@code gpu} option
 * may ask for GPUs on top: only when sandboxes are pods of a cluster ({@link #pods}).
 */
final class WorkerSizes {
  /** The built-in table, smallest first. */
  static final String DEFAULTS =
      "xsmall=0.5,256MiB,1 small=1,512MiB,1 medium=2,1GiB,2 large=4,2GiB,4 xlarge=8,4GiB,8";

  private static final Pattern SPEC =
      Pattern.compile(
          "([a-z][a-z0-9_-]*)=([0-9]+(?:\\.[0-9]+)?),([0-9]+)(MiB|GiB),([0-9]+)",
          Pattern.CASE_INSENSITIVE);

  private final Map<String, Sizing> byName;
  private final boolean pods;

  private WorkerSizes(Map<String, Sizing> byName, boolean pods) {
    this.byName = byName;
    this.pods = pods;
  }

  /** The same table, for sandboxes that are pods of a cluster (which may have GPU nodes). */
  WorkerSizes forPods() {
    return new WorkerSizes(byName, true);
  }

  /** Whether sandboxes are pods of a cluster (so may have GPUs) rather than local gVisor ones. */
  boolean pods() {
    return pods;
  }

  /**
   * The built-in table with {@code overrides} ({@code NAME=CPUS,MEMORY,RUNNERS} each) applied.
   *
   * @throws KilnException {@link ErrorCode#INVALID_CONFIGURATION} naming a malformed entry
   */
  static WorkerSizes of(List<String> overrides) throws KilnException {
    Map<String, Sizing> sizes = new LinkedHashMap<>();
    for (String s : DEFAULTS.split(" ")) {
      Sizing z = parse(s);
      sizes.put(z.name(), z);
    }
    for (String s : overrides) {
      Sizing z = parse(s.strip());
      sizes.put(z.name(), z);
    }
    return new WorkerSizes(sizes, false);
  }

  private static Sizing parse(String spec) throws KilnException {
    Matcher m = SPEC.matcher(spec);
    if (!m.matches()) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION,
          "worker size '"
              + spec
              + "' is not NAME=CPUS,MEMORY,RUNNERS (e.g. medium=2,1GiB,2; memory in MiB or GiB)");
    }
    long memory = Long.parseLong(m.group(3)) << (m.group(4).equalsIgnoreCase("GiB") ? 30 : 20);
    try {
      return new Sizing(
          m.group(1).toLowerCase(Locale.ROOT),
          Double.parseDouble(m.group(2)),
          memory,
          Integer.parseInt(m.group(5)));
    } catch (IllegalArgumentException e) {
      throw new KilnException(
          ErrorCode.INVALID_CONFIGURATION, "worker size '" + spec + "': " + e.getMessage());
    }
  }

  Optional<Sizing> find(String name) {
    return Optional.ofNullable(byName.get(name.toLowerCase(Locale.ROOT)));
  }

  List<String> names() {
    return new ArrayList<>(byName.keySet());
  }

  List<Sizing> all() {
    return List.copyOf(byName.values());
  }
}
