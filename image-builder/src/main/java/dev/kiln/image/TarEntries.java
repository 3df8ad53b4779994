package dev.kiln.image;

import org.apache.commons.compress.archivers.tar.TarArchiveEntry;

/** Tar entries as Kiln's layers have them: root's, no names, Jib's fixed time, so reproducible. */
final class TarEntries {
  /** Jib's time for layer entries (FileEntriesLayer.DEFAULT_MODIFICATION_TIME). */
  static final long ENTRY_TIME_SECONDS = 1;

  private TarEntries() {}

  /** A directory's entry ({@code mode} -1) or a file's of {@code size} bytes. */
  static TarArchiveEntry header(String path, int mode, long size) {
    TarArchiveEntry header =
        new TarArchiveEntry(path, mode < 0 ? TarArchiveEntry.LF_DIR : TarArchiveEntry.LF_NORMAL);
    header.setMode(mode < 0 ? 040755 : 0100000 | mode);
    header.setUserId(0);
    header.setGroupId(0);
    header.setUserName("");
    header.setGroupName("");
    header.setModTime(ENTRY_TIME_SECONDS * 1000);
    if (mode >= 0) {
      header.setSize(size);
    }
    return header;
  }
}
