package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;
import dev.kiln.definition.Tenant;
import java.io.IOException;
import java.nio.file.Path;
import java.time.InstantSource;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Environment variables an operator gives one tenant's UDF ({@code --udf-env FILE}), in the format
 * of Databend's own cloud-control mock: {@code [udf_env]} then {@code "tenant.udf_name" = { KEY =
 * "value" }}. Keys must match {@code ^[A-Z_][A-Z0-9_]*$}; Databend's reserved names and Kiln's own
 * ({@code KILN_*}, {@code PYTHON*}) are refused. Bad entries are logged by key, never by value;
 * values appear nowhere but in the UDF's processes. The file is read again when it changes (looked
 * at no more than once a second), and a changed value takes effect on the next query.
 */
final class UdfEnv {
  private static final Logger log = LoggerFactory.getLogger(UdfEnv.class);
  private static final TomlMapper TOML = new TomlMapper();
  private static final Pattern KEY = Pattern.compile("^[A-Z_][A-Z0-9_]*$");
  private static final Set<String> RESERVED = Set.of("UDF_SERVER_ADDR", "RESOURCE_STATUS_ADDR");

  /** One UDF's variables, and a version that changes whenever they do (never their values). */
  record Entry(Map<String, String> vars, long version) {
    static final Entry NONE = new Entry(Map.of(), 0);

    Entry {
      vars = Map.copyOf(vars);
    }
  }

  private final WatchedFile file;
  private Map<String, Entry> entries = Map.of();
  private long versions;

  /** Variables from {@code file}, or none when it is null. */
  UdfEnv(Path file, InstantSource clock) {
    this.file = file == null ? null : new WatchedFile(file, clock, "the UDF environment file");
  }

  /** The variables of the tenant's UDF {@code name} (none when the file names none). */
  synchronized Entry get(Tenant tenant, String name) {
    if (file == null) {
      return Entry.NONE;
    }
    WatchedFile.Change change = file.look();
    if (change != WatchedFile.Change.NONE) {
      reload(change);
    }
    return entries.getOrDefault(tenant.name() + "." + name, Entry.NONE);
  }

  private void reload(WatchedFile.Change change) {
    Map<String, Map<String, String>> read =
        change == WatchedFile.Change.MISSING ? Map.of() : read();
    if (read == null) {
      return; // unreadable: keep what was there
    }
    Map<String, Entry> next = new HashMap<>();
    for (Map.Entry<String, Map<String, String>> e : read.entrySet()) {
      Entry before = entries.get(e.getKey());
      next.put(
          e.getKey(),
          before != null && before.vars().equals(e.getValue())
              ? before
              : new Entry(e.getValue(), ++versions));
    }
    entries = next;
    log.info("UDF environment from {}: {} UDFs", file.path(), next.size());
  }

  /** The file's entries, bad ones left out and logged by key; null when it cannot be parsed. */
  private Map<String, Map<String, String>> read() {
    JsonNode root;
    try {
      root = TOML.readTree(file.path().toFile());
    } catch (IOException e) {
      // The parser's message may quote the file; keep values out of the log.
      log.warn(
          "the UDF environment file {} is not valid TOML; keeping the previous one", file.path());
      return null;
    }
    Map<String, Map<String, String>> out = new TreeMap<>();
    JsonNode table = root == null ? null : root.get("udf_env");
    if (table == null || !table.isObject()) {
      return out;
    }
    for (Map.Entry<String, JsonNode> udf : table.properties()) {
      if (!udf.getValue().isObject() || udf.getKey().indexOf('.') <= 0) {
        log.warn(
            "UDF environment file {}: entry '{}' is not \"tenant.udf_name\" = {{ KEY = \"value\" }};"
                + " skipped",
            file.path(),
            udf.getKey());
        continue;
      }
      Map<String, String> vars = new TreeMap<>();
      for (Map.Entry<String, JsonNode> v : udf.getValue().properties()) {
        String key = v.getKey();
        if (!KEY.matcher(key).matches()) {
          log.warn(
              "UDF environment of {}: key '{}' is not [A-Z_][A-Z0-9_]*; skipped",
              udf.getKey(),
              key);
        } else if (RESERVED.contains(key) || key.startsWith("KILN_") || key.startsWith("PYTHON")) {
          log.warn("UDF environment of {}: key '{}' is reserved; skipped", udf.getKey(), key);
        } else {
          JsonNode value = v.getValue();
          vars.put(key, value.isTextual() ? value.textValue() : value.toString());
        }
      }
      out.put(udf.getKey(), vars);
    }
    return out;
  }
}
