package dev.kiln.controlplane;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.PackageRequirement;
import dev.kiln.definition.RuntimeSpec;
import dev.kiln.definition.StagedImport;
import dev.kiln.definition.Tenant;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.egress.EgressPolicy;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Every UDF resource this server has answered for, kept in the data directory: a token Kiln handed
 * out stays good across a restart (clean or {@code kill -9}), a suspended UDF and one whose sandbox
 * died can be started again from a Flight call alone. One small JSON file per (tenant, key),
 * written to a temporary file and moved into place, so a crash never leaves half a record; all of
 * them are read at start and kept in memory, so a lookup touches no disk.
 *
 * <p>With several replicas ({@code --kubernetes}) each new record is also kept where every replica
 * reads it ({@link SharedDefinitions}), before its token goes out; a lookup that misses here asks
 * there, and keeps what it finds.
 *
 * <p>What is kept: the definition (canonical spec, requirements, imports with the URLs and headers
 * of the request that made it), the sandbox size, the worker it runs for and its egress allow-list.
 * Never the values of the UDF's environment: those are read again from {@code --udf-env} when it
 * starts again.
 */
final class Definitions {
  private static final Logger log = LoggerFactory.getLogger(Definitions.class);
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final Pattern PLAIN_TENANT = Pattern.compile("[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}");
  private static final int FORMAT = 1;

  /** What Kiln answered for: enough to provision the same resource again. */
  record Entry(
      Tenant tenant,
      ContentKey key,
      UdfDefinition definition,
      Sizing sizing,
      String owner,
      UdfEgress egress,
      Instant answered) {}

  private record Id(Tenant tenant, ContentKey key) {}

  private final Path dir;
  private final SharedDefinitions shared;
  private final ConcurrentHashMap<Id, Entry> entries = new ConcurrentHashMap<>();
  private final AtomicLong temps = new AtomicLong();

  private Definitions(Path dir, SharedDefinitions shared) {
    this.dir = dir;
    this.shared = shared;
  }

  /**
   * The records under {@code dir} (created when missing); unreadable ones are logged and skipped.
   */
  static Definitions open(Path dir) throws IOException {
    return open(dir, SharedDefinitions.NONE);
  }

  /** The records under {@code dir}, and those other replicas keep in {@code shared}. */
  static Definitions open(Path dir, SharedDefinitions shared) throws IOException {
    Files.createDirectories(dir);
    Definitions d = new Definitions(dir, shared);
    int bad = 0;
    try (DirectoryStream<Path> tenants = Files.newDirectoryStream(dir, Files::isDirectory)) {
      for (Path t : tenants) {
        try (DirectoryStream<Path> files = Files.newDirectoryStream(t)) {
          for (Path f : files) {
            String name = f.getFileName().toString();
            if (name.endsWith(".tmp")) {
              Files.deleteIfExists(f); // a write a crash interrupted
              continue;
            }
            if (!name.endsWith(".json")) {
              continue;
            }
            try {
              Entry e = read(Files.readString(f, StandardCharsets.UTF_8));
              d.entries.put(new Id(e.tenant(), e.key()), e);
            } catch (IOException | KilnException | RuntimeException e) {
              bad++;
              log.warn("skipping UDF record {}: {}", f, e.getMessage());
            }
          }
        }
      }
    }
    log.info(
        "{} UDF definition(s) kept from earlier runs{}",
        d.entries.size(),
        bad == 0 ? "" : " (" + bad + " unreadable, skipped)");
    return d;
  }

  /**
   * The record for the tenant's key, if Kiln (this server, or another replica) ever answered for
   * it.
   */
  Optional<Entry> get(Tenant tenant, ContentKey key) {
    Entry e = entries.get(new Id(tenant, key));
    if (e != null) {
      return Optional.of(e);
    }
    Optional<Entry> elsewhere = shared.get(tenant, key);
    elsewhere.ifPresent(this::keep);
    return elsewhere;
  }

  /** Every record. */
  Collection<Entry> all() {
    return List.copyOf(entries.values());
  }

  int size() {
    return entries.size();
  }

  /**
   * Keeps {@code e} (replacing the record for its tenant and key). Returns false, having logged
   * why, when it cannot be written: the answer still goes out (the UDF works until the next
   * restart).
   */
  boolean put(Entry e) {
    shared.put(e);
    return keep(e);
  }

  /** Keeps {@code e} here (in memory and in its file). */
  private boolean keep(Entry e) {
    Id id = new Id(e.tenant(), e.key());
    Entry before = entries.put(id, e);
    if (before != null && same(before, e)) {
      return true;
    }
    try {
      Path file = file(id);
      Files.createDirectories(file.getParent());
      Path tmp = file.resolveSibling(file.getFileName() + "." + temps.incrementAndGet() + ".tmp");
      Files.writeString(tmp, write(e), StandardCharsets.UTF_8);
      try {
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } catch (AtomicMoveNotSupportedException x) {
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING);
      }
      return true;
    } catch (IOException | RuntimeException x) {
      log.warn(
          "cannot keep the definition of UDF {} tenant={} in {}: {}; it works until Kiln restarts",
          e.key().shortForm(),
          e.tenant(),
          dir,
          x.toString());
      return false;
    }
  }

  /** Records {@link #collect} removed (or would remove) and their bytes. */
  record Collected(int records, long bytes) {}

  /**
   * Forgets the records not answered for since {@code unusedBefore} whose (tenant, key) {@code
   * live} does not hold. Databend asks for a UDF again at the start of every query that uses it, so
   * a record forgotten this way comes back with the next query.
   */
  Collected collect(
      java.util.function.BiPredicate<Tenant, ContentKey> live,
      Instant unusedBefore,
      boolean dryRun) {
    int n = 0;
    long bytes = 0;
    for (Entry e : all()) {
      if (live.test(e.tenant(), e.key()) || !e.answered().isBefore(unusedBefore)) {
        continue;
      }
      Id id = new Id(e.tenant(), e.key());
      Path f = file(id);
      try {
        bytes += Files.exists(f) ? Files.size(f) : 0;
        n++;
        if (!dryRun && entries.remove(id, e)) {
          Files.deleteIfExists(f);
        }
      } catch (IOException x) {
        log.warn("cannot delete UDF record {}: {}", f, x.toString());
      }
    }
    return new Collected(n, bytes);
  }

  /** Notes that Kiln answered for the tenant's key now (in memory: no disk on the hot path). */
  void used(Tenant tenant, ContentKey key, Instant now) {
    entries.computeIfPresent(
        new Id(tenant, key),
        (id, e) ->
            new Entry(e.tenant(), e.key(), e.definition(), e.sizing(), e.owner(), e.egress(), now));
  }

  /**
   * Forgets the tenant's records for worker {@code owner} (DROP WORKER), here and shared; returns
   * how many were here.
   */
  int removeOwned(Tenant tenant, String owner) {
    shared.removeOwned(tenant, owner);
    return removeOwnedHere(tenant, owner);
  }

  /**
   * Forgets the tenant's records for worker {@code owner} in this data directory only (another
   * replica dropped the worker, and the shared ones with it); returns how many there were.
   */
  int removeOwnedHere(Tenant tenant, String owner) {
    int n = 0;
    for (Entry e : all()) {
      if (e.tenant().equals(tenant) && owner.equals(e.owner())) {
        Id id = new Id(e.tenant(), e.key());
        entries.remove(id, e);
        try {
          Files.deleteIfExists(file(id));
        } catch (IOException x) {
          log.warn("cannot delete UDF record {}: {}", file(id), x.toString());
        }
        n++;
      }
    }
    return n;
  }

  /** Same content as far as the file goes (the time it was answered aside). */
  private static boolean same(Entry a, Entry b) {
    return a.definition().equals(b.definition())
        && a.sizing().equals(b.sizing())
        && java.util.Objects.equals(a.owner(), b.owner())
        && a.egress().equals(b.egress());
  }

  private Path file(Id id) {
    return dir.resolve(directoryOf(id.tenant())).resolve(id.key().hex() + ".json");
  }

  /** A tenant's directory: its name when that is a plain file name, else the name in base64. */
  static String directoryOf(Tenant tenant) {
    String name = tenant.name();
    return PLAIN_TENANT.matcher(name).matches()
        ? name
        : "~"
            + Base64.getUrlEncoder()
                .withoutPadding()
                .encodeToString(name.getBytes(StandardCharsets.UTF_8));
  }

  // ------------------------------------------------------------------ the file format

  static String write(Entry e) {
    ObjectNode n = JSON.createObjectNode();
    n.put("format", FORMAT);
    n.put("tenant", e.tenant().name());
    n.put("key", e.key().hex());
    n.put("answered", e.answered().toString());
    if (e.owner() != null) {
      n.put("owner", e.owner());
    }
    ObjectNode size = n.putObject("size");
    size.put("name", e.sizing().name());
    size.put("cpus", e.sizing().cpus());
    size.put("memory_bytes", e.sizing().memoryBytes());
    size.put("runners", e.sizing().runners());
    size.put("gpus", e.sizing().gpus());
    if (!e.egress().isEmpty()) {
      n.put("egress", e.egress().policy().toString());
      if (e.egress().policyFile() != null) {
        n.put("egress_file", e.egress().policyFile());
      }
    }
    UdfDefinition d = e.definition();
    n.put("spec", d.spec().canonicalJson());
    ArrayNode reqs = n.putArray("requirements");
    for (PackageRequirement r : d.requirements()) {
      reqs.addObject().put("text", r.text()).put("origin", r.origin());
    }
    ArrayNode imports = n.putArray("imports");
    for (StagedImport i : d.imports()) {
      ObjectNode o = imports.addObject();
      o.put("location", i.location()).put("url", i.url()).put("tag", i.tag());
      ObjectNode headers = o.putObject("headers");
      new TreeMap<>(i.headers()).forEach(headers::put);
    }
    return n.toString();
  }

  static Entry read(String text) throws IOException, KilnException {
    JsonNode n = JSON.readTree(text);
    if (n.path("format").asInt() != FORMAT) {
      throw new IOException("unknown record format " + n.path("format"));
    }
    List<PackageRequirement> reqs = new ArrayList<>();
    for (JsonNode r : n.path("requirements")) {
      reqs.add(new PackageRequirement(r.path("text").asText(), r.path("origin").asText()));
    }
    List<StagedImport> imports = new ArrayList<>();
    for (JsonNode i : n.path("imports")) {
      Map<String, String> headers = new TreeMap<>();
      i.path("headers").properties().forEach(h -> headers.put(h.getKey(), h.getValue().asText()));
      imports.add(
          new StagedImport(
              i.path("location").asText(),
              i.path("url").asText(),
              headers,
              i.path("tag").asText()));
    }
    JsonNode size = n.path("size");
    return new Entry(
        new Tenant(n.path("tenant").asText()),
        new ContentKey(n.path("key").asText()),
        new UdfDefinition(RuntimeSpec.parse(n.path("spec").asText()), reqs, imports),
        new Sizing(
            size.path("name").asText(),
            size.path("cpus").asDouble(),
            size.path("memory_bytes").asLong(),
            size.path("runners").asInt(),
            size.path("gpus").asInt(0)),
        n.hasNonNull("owner") ? n.path("owner").asText() : null,
        n.hasNonNull("egress")
            ? new UdfEgress(
                EgressPolicy.parse(n.path("egress").asText()),
                n.hasNonNull("egress_file") ? n.path("egress_file").asText() : null)
            : UdfEgress.NONE,
        Instant.parse(n.path("answered").asText()));
  }
}
