package dev.kiln.controlplane;

import dev.kiln.definition.Tenant;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.TreeMap;
import java.util.function.UnaryOperator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A single server's workers, kept in one JSON file of the data directory, so they survive a
 * restart. Every change is written aside and moved into place; a reader never sees half a file.
 */
final class FileWorkers implements Workers {
  private static final Logger log = LoggerFactory.getLogger(FileWorkers.class);

  /** The file's name in the data directory. */
  static final String FILE = "workers.json";

  /** What the file holds: tenant name -> worker name -> worker. */
  private record Saved(Map<String, Map<String, Worker>> tenants) {}

  private final Path file;
  private final Map<String, Map<String, Worker>> tenants;

  private FileWorkers(Path file, Map<String, Map<String, Worker>> tenants) {
    this.file = file;
    this.tenants = tenants;
  }

  /** The workers kept in {@code file} (none when it does not exist yet). */
  static FileWorkers open(Path file) throws IOException {
    Map<String, Map<String, Worker>> tenants = new TreeMap<>();
    if (Files.isRegularFile(file)) {
      Saved saved = JSON.readValue(file.toFile(), Saved.class);
      if (saved.tenants() != null) {
        saved.tenants().forEach((t, ws) -> tenants.put(t, new TreeMap<>(ws)));
      }
      log.info(
          "{} workers of {} tenants from {}",
          tenants.values().stream().mapToInt(Map::size).sum(),
          tenants.size(),
          file);
    }
    return new FileWorkers(file, tenants);
  }

  @Override
  public synchronized Optional<Worker> get(Tenant tenant, String name) {
    return Optional.ofNullable(tenants.getOrDefault(tenant.name(), Map.of()).get(name));
  }

  @Override
  public synchronized Map<String, List<Worker>> all() {
    Map<String, List<Worker>> out = new TreeMap<>();
    tenants.forEach((t, ws) -> out.put(t, List.copyOf(ws.values())));
    return out;
  }

  @Override
  public synchronized List<Worker> list(Tenant tenant) {
    List<Worker> out = new ArrayList<>(tenants.getOrDefault(tenant.name(), Map.of()).values());
    out.sort(Comparator.comparing(Worker::name));
    return out;
  }

  @Override
  public synchronized Worker update(Tenant tenant, String name, UnaryOperator<Worker> change) {
    Map<String, Worker> byName = tenants.computeIfAbsent(tenant.name(), t -> new TreeMap<>());
    Worker before = byName.get(name);
    Worker after = change.apply(before);
    if (Objects.equals(before, after)) {
      return after;
    }
    if (after == null) {
      byName.remove(name);
      if (byName.isEmpty()) {
        tenants.remove(tenant.name());
      }
    } else {
      byName.put(name, after);
    }
    save();
    return after;
  }

  private void save() {
    try {
      Files.createDirectories(file.getParent());
      Path temp = Files.createTempFile(file.getParent(), ".workers", ".tmp");
      try {
        JSON.writerWithDefaultPrettyPrinter().writeValue(temp.toFile(), new Saved(tenants));
        Files.move(temp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
      } finally {
        Files.deleteIfExists(temp);
      }
    } catch (IOException e) {
      throw new UncheckedIOException("cannot keep the workers in " + file, e);
    }
  }
}
