package dev.kiln.egress;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * A worker's {@code egress} option: the hosts its UDF may connect to, as a comma-separated list of
 * {@link EgressRule patterns}. Empty (the default): no network at all.
 */
public record EgressPolicy(List<EgressRule> rules) {
  /** No egress: the sandbox has no network. */
  public static final EgressPolicy NONE = new EgressPolicy(List.of());

  public EgressPolicy {
    rules = List.copyOf(rules);
  }

  /**
   * The policy {@code option} (the {@code egress} value, comma-separated) says.
   *
   * @throws KilnException {@link ErrorCode#INVALID_WORKER_OPTION} naming every bad pattern and why
   */
  public static EgressPolicy parse(String option) throws KilnException {
    if (option == null || option.isBlank()) {
      return NONE;
    }
    List<EgressRule> rules = new ArrayList<>();
    List<String> errors = new ArrayList<>();
    for (String part : option.split(",")) {
      if (part.isBlank()) {
        continue;
      }
      try {
        rules.add(EgressRule.parse(part));
      } catch (IllegalArgumentException e) {
        errors.add("'" + part.strip() + "': " + e.getMessage());
      }
    }
    if (!errors.isEmpty()) {
      throw new KilnException(
          ErrorCode.INVALID_WORKER_OPTION,
          "egress: "
              + String.join("; ", errors)
              + ". Patterns are host names (api.example.com), wildcards over leading labels"
              + " (*.amazonaws.com) or IP addresses (10.1.2.3, [2001:db8::1]), each with an"
              + " optional :PORT, separated by commas");
    }
    return new EgressPolicy(rules);
  }

  /** Whether the UDF may have any network. */
  public boolean isEmpty() {
    return rules.isEmpty();
  }

  /** The first rule that lets a connection to {@code target}:{@code port} through, if any. */
  public Optional<EgressRule> allowing(String target, int port) {
    return allowingNormal(EgressRule.normalise(target), port);
  }

  /** {@link #allowing} for a target {@link EgressRule#normalise normalised} already. */
  Optional<EgressRule> allowingNormal(String normal, int port) {
    return rules.stream().filter(r -> r.matchesNormal(normal, port)).findFirst();
  }

  /** As the option is written back: the rules, comma-separated. */
  @Override
  public String toString() {
    return String.join(",", rules.stream().map(EgressRule::toString).toList());
  }
}
