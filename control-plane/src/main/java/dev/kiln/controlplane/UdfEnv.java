package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.dataformat.toml.TomlMapper;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.Tenant;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
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
 *
 * <p>Secrets are never written in the file: {@code KEY = { secret_file = "/run/secrets/x" }} takes
 * the value from a file (one trailing newline dropped; read again when it changes, so a rotated
 * Kubernetes secret takes effect on the next query), {@code KEY = { secret_env = "NAME" }} from an
 * environment variable of the Kiln process. A secret that cannot be read fails the requests of its
 * UDF, naming the key and where it was to come from, until it can.
 */
final class UdfEnv {
  private static final Logger log = LoggerFactory.getLogger(UdfEnv.class);
  private static final TomlMapper TOML = new TomlMapper();
  private static final Pattern KEY = Pattern.compile("^[A-Z_][A-Z0-9_]*$");
  private static final Set<String> RESERVED = Set.of("UDF_SERVER_ADDR", "RESOURCE_STATUS_ADDR");

  /** The most a secret may hold (an environment variable's value). */
  static final int MAX_SECRET_BYTES = 64 << 10;

  /**
   * One UDF's variables, and a version that changes whenever they do (never their values).
   *
   * @param error what is wrong with the entry (a secret that cannot be read; never a value), or
   *     null
   */
  record Entry(Map<String, String> vars, long version, String error) {
    static final Entry NONE = new Entry(Map.of(), 0, null);

    Entry {
      vars = Map.copyOf(vars);
    }

    /**
     * The variables.
     *
     * @throws KilnException {@link ErrorCode#INVALID_CONFIGURATION} when a secret of the entry
     *     cannot be read
     */
    Map<String, String> checked() throws KilnException {
      if (error != null) {
        throw new KilnException(ErrorCode.INVALID_CONFIGURATION, error);
      }
      return vars;
    }
  }

  /** An entry as read: its variables, or what is wrong with it. */
  private record Read(Map<String, String> vars, String error) {}

  private final WatchedFile file;
  private final InstantSource clock;
  private Map<String, Entry> entries = Map.of();
  private Map<Path, WatchedFile> secretFiles = Map.of();
  private long versions;

  /** Variables from {@code file}, or none when it is null. */
  UdfEnv(Path file, InstantSource clock) {
    this.file = file == null ? null : new WatchedFile(file, clock, "the UDF environment file");
    this.clock = clock;
  }

  /** The variables of the tenant's UDF {@code name} (none when the file names none). */
  synchronized Entry get(Tenant tenant, String name) {
    if (file == null) {
      return Entry.NONE;
    }
    WatchedFile.Change change = file.look();
    boolean secretsChanged = false;
    for (WatchedFile f : secretFiles.values()) {
      secretsChanged |= f.look() != WatchedFile.Change.NONE;
    }
    if (change != WatchedFile.Change.NONE || secretsChanged) {
      reload(change == WatchedFile.Change.MISSING);
    }
    return entries.getOrDefault(tenant.name() + "." + name, Entry.NONE);
  }

  private void reload(boolean missing) {
    Map<Path, WatchedFile> secrets = new HashMap<>();
    Map<String, Read> read = missing ? Map.of() : read(secrets);
    if (read == null) {
      return; // unreadable: keep what was there
    }
    // Files watched already keep their watch; a new one is looked at now, so that what was just
    // read is not taken for a change at the next look.
    Map<Path, WatchedFile> watched = new HashMap<>();
    for (Map.Entry<Path, WatchedFile> e : secrets.entrySet()) {
      WatchedFile known = secretFiles.get(e.getKey());
      if (known == null) {
        known = e.getValue();
        known.look();
      }
      watched.put(e.getKey(), known);
    }
    secretFiles = watched;
    Map<String, Entry> next = new HashMap<>();
    for (Map.Entry<String, Read> e : read.entrySet()) {
      Entry before = entries.get(e.getKey());
      Read r = e.getValue();
      next.put(
          e.getKey(),
          before != null
                  && before.vars().equals(r.vars())
                  && Objects.equals(before.error(), r.error())
              ? before
              : new Entry(r.vars(), ++versions, r.error()));
    }
    entries = next;
    log.info("UDF environment from {}: {} UDFs", file.path(), next.size());
  }

  /**
   * The file's entries, bad keys left out and logged by key; null when it cannot be parsed. The
   * secret files it names are added to {@code secrets}.
   */
  private Map<String, Read> read(Map<Path, WatchedFile> secrets) {
    JsonNode root;
    try {
      root = TOML.readTree(file.path().toFile());
    } catch (IOException e) {
      // The parser's message may quote the file; keep values out of the log.
      log.warn(
          "the UDF environment file {} is not valid TOML; keeping the previous one", file.path());
      return null;
    }
    Map<String, Read> out = new TreeMap<>();
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
      List<String> errors = new ArrayList<>();
      for (Map.Entry<String, JsonNode> v : udf.getValue().properties()) {
        String key = v.getKey();
        if (!KEY.matcher(key).matches()) {
          log.warn(
              "UDF environment of {}: key '{}' is not [A-Z_][A-Z0-9_]*; skipped",
              udf.getKey(),
              key);
        } else if (RESERVED.contains(key) || key.startsWith("KILN_") || key.startsWith("PYTHON")) {
          log.warn("UDF environment of {}: key '{}' is reserved; skipped", udf.getKey(), key);
        } else if (v.getValue().isObject()) {
          try {
            vars.put(key, secret(v.getValue(), secrets));
          } catch (IllegalArgumentException e) {
            errors.add("secret " + key + ": " + e.getMessage());
          }
        } else {
          JsonNode value = v.getValue();
          vars.put(key, value.isTextual() ? value.textValue() : value.toString());
        }
      }
      String error = null;
      if (!errors.isEmpty()) {
        error =
            "the UDF environment file "
                + file.path()
                + ", entry \""
                + udf.getKey()
                + "\": "
                + String.join("; ", errors)
                + "; the operator must fix it (it is read again when it changes)";
        log.warn(error);
      }
      out.put(udf.getKey(), new Read(vars, error));
    }
    return out;
  }

  /**
   * A secret's value: {@code { secret_file = PATH }} or {@code { secret_env = NAME }}.
   *
   * @throws IllegalArgumentException saying why it cannot be had (never a value)
   */
  private String secret(JsonNode spec, Map<Path, WatchedFile> secrets) {
    JsonNode path = spec.get("secret_file");
    JsonNode env = spec.get("secret_env");
    if (spec.size() != 1
        || (path == null || !path.isTextual()) == (env == null || !env.isTextual())) {
      throw new IllegalArgumentException(
          "is neither { secret_file = \"PATH\" } nor { secret_env = \"NAME\" }");
    }
    if (env != null) {
      String value = System.getenv(env.textValue());
      if (value == null) {
        throw new IllegalArgumentException(
            "the Kiln process has no environment variable " + env.textValue());
      }
      return value;
    }
    Path p = file.path().resolveSibling(path.textValue());
    secrets.put(p, new WatchedFile(p, clock, "a secret file"));
    try {
      if (Files.size(p) > MAX_SECRET_BYTES) {
        throw new IllegalArgumentException(
            "file " + p + " holds more than " + MAX_SECRET_BYTES + " bytes");
      }
      String value = Files.readString(p, StandardCharsets.UTF_8);
      if (value.endsWith("\r\n")) {
        return value.substring(0, value.length() - 2);
      }
      return value.endsWith("\n") ? value.substring(0, value.length() - 1) : value;
    } catch (IOException e) {
      throw new IllegalArgumentException(
          "file " + p + " cannot be read (" + e.getClass().getSimpleName() + ")");
    }
  }
}
