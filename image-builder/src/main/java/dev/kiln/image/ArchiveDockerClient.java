package dev.kiln.image;

import com.google.cloud.tools.jib.api.DescriptorDigest;
import com.google.cloud.tools.jib.api.DockerClient;
import com.google.cloud.tools.jib.api.ImageDetails;
import com.google.cloud.tools.jib.api.ImageReference;
import com.google.cloud.tools.jib.image.ImageTarball;
import dev.kiln.cache.Digest;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.DigestException;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveInputStream;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;

/**
 * A read-only "Docker daemon" for Jib that holds exactly one image: a {@code docker save} archive
 * on local disk. It is how Kiln hands Jib an archive base image.
 *
 * <p>Why not {@code Jib.from(TarImage.at(archive))}: Jib's tar base path extracts the whole archive
 * and re-reads its layers on every build, and its extractor refuses the {@code ./} entry that
 * {@code tar -C dir .} (and so {@code bin/build-base-image}) writes. Through Jib's {@link
 * DockerClient} interface, Jib first {@linkplain #inspect inspects} the image (image id and diff
 * ids, answered from the archive's index without reading layers) and finds its config and layers in
 * its base layer cache after the first build; only on that first build does it ask to {@linkplain
 * #save save} the image, and then gets a copy of the archive without directory entries.
 */
final class ArchiveDockerClient implements DockerClient {
  private final DockerArchive archive;

  ArchiveDockerClient(DockerArchive archive) {
    this.archive = archive;
  }

  /**
   * The name Jib knows the image by, pinned to the image id (config digest) so that Jib sees a
   * reproducible base and the name changes with the archive's content.
   */
  ImageReference imageReference() {
    return ImageReference.of(null, "kiln/base-archive", null, archive.configDigest().toString());
  }

  @Override
  public boolean supported(Map<String, String> parameters) {
    return true;
  }

  @Override
  public String load(ImageTarball imageTarball, Consumer<Long> writtenByteCountListener) {
    throw new UnsupportedOperationException(
        "the base image archive "
            + archive.path()
            + " is read-only; Kiln never loads images into it");
  }

  @Override
  public void save(ImageReference imageReference, Path outputPath, Consumer<Long> written)
      throws IOException {
    checkImage(imageReference);
    try (InputStream raw = new BufferedInputStream(Files.newInputStream(archive.path()), 1 << 16);
        TarArchiveInputStream in = new TarArchiveInputStream(raw);
        OutputStream file = new BufferedOutputStream(Files.newOutputStream(outputPath), 1 << 16);
        TarArchiveOutputStream out = new TarArchiveOutputStream(file)) {
      out.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
      out.setBigNumberMode(TarArchiveOutputStream.BIGNUMBER_POSIX);
      for (TarArchiveEntry entry = in.getNextEntry(); entry != null; entry = in.getNextEntry()) {
        if (entry.isDirectory()) {
          continue; // Jib creates directories as needed and rejects "./"
        }
        String name =
            entry.getName().startsWith("./") ? entry.getName().substring(2) : entry.getName();
        TarArchiveEntry copy =
            entry.isSymbolicLink()
                ? new TarArchiveEntry(name, TarArchiveEntry.LF_SYMLINK)
                : new TarArchiveEntry(name);
        if (entry.isSymbolicLink()) {
          copy.setLinkName(entry.getLinkName());
        } else {
          copy.setSize(entry.getSize());
        }
        copy.setMode(entry.getMode());
        copy.setModTime(entry.getModTime());
        out.putArchiveEntry(copy);
        if (!entry.isSymbolicLink()) {
          written.accept(in.transferTo(out));
        }
        out.closeArchiveEntry();
      }
      out.finish();
    } catch (IOException e) {
      throw new IOException(
          "base image archive " + archive.path() + " cannot be read: " + e.getMessage(), e);
    }
  }

  @Override
  public ImageDetails inspect(ImageReference imageReference) throws IOException {
    checkImage(imageReference);
    long size = Files.size(archive.path());
    List<DescriptorDigest> diffIds = new ArrayList<>();
    try {
      DescriptorDigest imageId = jib(archive.configDigest());
      for (Digest d : archive.diffIds()) {
        diffIds.add(jib(d));
      }
      return new ImageDetails() {
        @Override
        public long getSize() {
          return size;
        }

        @Override
        public DescriptorDigest getImageId() {
          return imageId;
        }

        @Override
        public List<DescriptorDigest> getDiffIds() {
          return diffIds;
        }
      };
    } catch (DigestException e) {
      throw new IOException("base image archive " + archive.path() + " has a malformed digest", e);
    }
  }

  private void checkImage(ImageReference imageReference) throws IOException {
    if (!imageReference.equals(imageReference())) {
      throw new IOException("this archive holds " + imageReference() + ", not " + imageReference);
    }
  }

  private static DescriptorDigest jib(Digest digest) throws DigestException {
    return DescriptorDigest.fromDigest(digest.toString());
  }
}
