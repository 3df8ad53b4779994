package dev.kiln.controlplane;

import java.util.ArrayList;
import java.util.List;
import picocli.CommandLine.Option;

/** The egress proxy's flags that {@code kiln serve} and {@code kiln egress} share. */
final class EgressOptions {
  @Option(
      names = "--egress-deny",
      paramLabel = "CIDR[,CIDR...]",
      description =
          "Addresses no UDF may connect to whatever its allow-list says (default: cloud metadata,"
              + " loopback, private, CGNAT and link-local ranges; 'none' for none). Repeatable;"
              + " replaces the default list.")
  List<String> deny = new ArrayList<>();

  @Option(
      names = "--egress-hosts",
      paramLabel = "FILE",
      description =
          "Names the egress proxy resolves from this file (/etc/hosts format) before asking DNS.")
  String hosts;
}
