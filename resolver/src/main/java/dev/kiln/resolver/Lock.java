package dev.kiln.resolver;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/** A resolution result, in a stable (sorted) order. */
public record Lock(List<LockedPackage> packages) {
  public Lock {
    List<LockedPackage> sorted = new ArrayList<>(packages);
    sorted.sort(Comparator.comparing(LockedPackage::name));
    for (int i = 1; i < sorted.size(); i++) {
      if (sorted.get(i).name().equals(sorted.get(i - 1).name())) {
        throw new IllegalArgumentException(
            "a lock has one version per package, " + sorted.get(i).name() + " twice");
      }
    }
    packages = List.copyOf(sorted);
  }

  /** The lock with no packages. */
  public static Lock empty() {
    return new Lock(List.of());
  }

  /**
   * Stable text for the content key: one {@code name==version filename sha256=HEX} line per
   * package, sorted by name; "" for no packages. The URL is left out: the same wheel from another
   * mirror is the same content.
   */
  public String canonical() {
    StringBuilder sb = new StringBuilder();
    for (LockedPackage p : packages) {
      sb.append(p.name())
          .append("==")
          .append(p.version())
          .append(' ')
          .append(p.filename())
          .append(" sha256=")
          .append(p.sha256())
          .append('\n');
    }
    return sb.toString();
  }
}
