package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.Tenant;
import dev.kiln.egress.EgressPolicy;
import dev.kiln.egress.EgressRule;
import java.io.IOException;
import java.nio.file.Path;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The egress allow-lists an operator grants ({@code --egress-policy FILE}), in the style of the
 * environment file: {@code [udf_egress]} then {@code "tenant" = ["*.amazonaws.com"]} for every UDF
 * of a tenant, or {@code "tenant.udf" = ["api.example.com:443"]} for one — a worker's name on
 * CreateWorker, the handler's on ApplyUdfResource (whose request names no SQL function). A UDF may
 * reach what its worker's {@code egress} option and the file's entries for it allow together; the
 * operator's deny list still wins over all of them. The file is read again when it changes; an
 * entry with a bad pattern fails the requests of the UDFs it names, saying which entry and pattern,
 * until the file is fixed.
 */
final class EgressPolicies {
  private static final Logger log = LoggerFactory.getLogger(EgressPolicies.class);
  private static final TomlMapper TOML = new TomlMapper();

  /** An entry: its list, or what is wrong with it. */
  private record Entry(EgressPolicy policy, String error) {}

  private final WatchedFile file;
  private Map<String, Entry> entries = Map.of();

  /** Allow-lists from {@code file}, or none when it is null. */
  EgressPolicies(Path file, InstantSource clock) {
    this.file = file == null ? null : new WatchedFile(file, clock, "the egress policy file");
  }

  /**
   * What the tenant's worker {@code worker} may reach: its {@code egress} option and the file's
   * entries for the tenant and for the worker.
   *
   * @throws KilnException {@link ErrorCode#INVALID_CONFIGURATION} when an entry for it is bad
   */
  UdfEgress forWorker(Tenant tenant, String worker, EgressPolicy option) throws KilnException {
    EgressPolicy granted = granted(tenant, worker);
    if (option.isEmpty() && granted.isEmpty()) {
      return UdfEgress.NONE;
    }
    // A worker's user changes the list with ALTER WORKER, whatever the file adds.
    return new UdfEgress(union(option, granted), null);
  }

  /**
   * What an ApplyUdfResource UDF with {@code handler} may reach: the file's entries for the tenant
   * and for the handler.
   *
   * @throws KilnException {@link ErrorCode#INVALID_CONFIGURATION} when an entry for it is bad
   */
  UdfEgress forUdf(Tenant tenant, String handler) throws KilnException {
    EgressPolicy granted = granted(tenant, handler);
    return granted.isEmpty() ? UdfEgress.NONE : new UdfEgress(granted, file.path().toString());
  }

  private synchronized EgressPolicy granted(Tenant tenant, String name) throws KilnException {
    if (file == null) {
      return EgressPolicy.NONE;
    }
    WatchedFile.Change change = file.look();
    if (change == WatchedFile.Change.MISSING) {
      entries = Map.of();
    } else if (change == WatchedFile.Change.CHANGED) {
      Map<String, Entry> read = read();
      if (read != null) {
        entries = read;
      }
    }
    EgressPolicy all = EgressPolicy.NONE;
    for (String id : List.of(tenant.name(), tenant.name() + "." + name)) {
      Entry e = entries.get(id);
      if (e == null) {
        continue;
      }
      if (e.error() != null) {
        throw new KilnException(
            ErrorCode.INVALID_CONFIGURATION,
            "the egress policy file "
                + file.path()
                + ", entry \""
                + id
                + "\": "
                + e.error()
                + "; the operator must fix the file (it is read again when it changes)");
      }
      all = union(all, e.policy());
    }
    return all;
  }

  private static EgressPolicy union(EgressPolicy a, EgressPolicy b) {
    if (b.isEmpty()) {
      return a; // the usual case on every request: nothing (more) granted
    }
    if (a.isEmpty()) {
      return b;
    }
    Map<String, EgressRule> rules = new LinkedHashMap<>();
    for (EgressRule r : a.rules()) {
      rules.putIfAbsent(r.toString(), r);
    }
    for (EgressRule r : b.rules()) {
      rules.putIfAbsent(r.toString(), r);
    }
    return new EgressPolicy(new ArrayList<>(rules.values()));
  }

  /** The file's entries; null (keep the previous ones) when it cannot be parsed. */
  private Map<String, Entry> read() {
    JsonNode root;
    try {
      root = TOML.readTree(file.path().toFile());
    } catch (IOException e) {
      log.warn(
          "the egress policy file {} is not valid TOML ({}); keeping the previous one",
          file.path(),
          e.getMessage());
      return null;
    }
    Map<String, Entry> out = new TreeMap<>();
    JsonNode table = root == null ? null : root.get("udf_egress");
    if (table == null || !table.isObject()) {
      log.warn(
          "the egress policy file {} has no [udf_egress] table: no UDF is granted egress",
          file.path());
      return out;
    }
    for (Map.Entry<String, JsonNode> e : table.properties()) {
      JsonNode v = e.getValue();
      List<String> patterns = new ArrayList<>();
      if (v.isTextual()) {
        patterns.add(v.textValue());
      } else if (v.isArray()) {
        v.forEach(p -> patterns.add(p.isTextual() ? p.textValue() : p.toString()));
      }
      if (!v.isTextual() && !v.isArray()) {
        out.put(
            e.getKey(),
            new Entry(null, "not a list of host patterns such as [\"*.amazonaws.com\"]"));
        continue;
      }
      try {
        out.put(e.getKey(), new Entry(EgressPolicy.parse(String.join(",", patterns)), null));
      } catch (KilnException x) {
        out.put(e.getKey(), new Entry(null, x.getMessage()));
        log.warn(
            "egress policy file {}, entry \"{}\": {}", file.path(), e.getKey(), x.getMessage());
      }
    }
    log.info("egress policy from {}: {} entries", file.path(), out.size());
    return out;
  }
}
