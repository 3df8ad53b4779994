package dev.kiln.controlplane;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.time.Duration;
import java.time.Instant;
import java.time.InstantSource;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An operator's file that Kiln reads again when it changes ({@code --udf-env}, {@code
 * --egress-policy}): its size, modification time and file key are looked at no more than once per
 * {@link #CHECK_INTERVAL}, so a request pays for a stat at most once a second.
 */
final class WatchedFile {
  private static final Logger log = LoggerFactory.getLogger(WatchedFile.class);

  static final Duration CHECK_INTERVAL = Duration.ofSeconds(1);

  /** What a look found. */
  enum Change {
    /** The same as at the last look (or looked at too recently to tell). */
    NONE,
    /** Changed (or seen for the first time): read it again. */
    CHANGED,
    /** Gone (or never there): its entries are none. */
    MISSING
  }

  private final Path file;
  private final InstantSource clock;
  private final String what;
  private Instant checkedAt = Instant.MIN;
  private String stamp = "";

  /** {@code what} names the file in log lines ("the UDF environment file"). */
  WatchedFile(Path file, InstantSource clock, String what) {
    this.file = file;
    this.clock = clock;
    this.what = what;
  }

  Path path() {
    return file;
  }

  /** Whether the file changed since the last look that saw a change. */
  synchronized Change look() {
    Instant now = clock.instant();
    if (Duration.between(checkedAt, now).compareTo(CHECK_INTERVAL) < 0) {
      return Change.NONE;
    }
    checkedAt = now;
    String seen;
    try {
      BasicFileAttributes a = Files.readAttributes(file, BasicFileAttributes.class);
      seen = a.size() + "@" + a.lastModifiedTime().toInstant() + "#" + a.fileKey();
    } catch (NoSuchFileException e) {
      seen = "missing";
    } catch (IOException e) {
      log.warn("cannot read {} {}: {}", what, file, e.toString());
      return Change.NONE;
    }
    if (seen.equals(stamp)) {
      return Change.NONE;
    }
    stamp = seen;
    return seen.equals("missing") ? Change.MISSING : Change.CHANGED;
  }
}
