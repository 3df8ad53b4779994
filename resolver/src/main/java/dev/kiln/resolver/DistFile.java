package dev.kiln.resolver;

import java.net.URI;

/**
 * One file a simple-API project page lists.
 *
 * @param filename the file name (a wheel or an sdist)
 * @param url where to download it (no fragment, no credentials)
 * @param sha256 its sha256 as the index states it, or null when the index gives none
 * @param requiresPython the {@code Requires-Python} the index states, or null
 * @param yanked whether the file is yanked (PEP 592)
 * @param hasMetadata whether the index serves its core metadata at {@code url + ".metadata"} (PEP
 *     658 / 714)
 * @param metadataSha256 the sha256 of that metadata file, or null
 */
record DistFile(
    String filename,
    URI url,
    String sha256,
    String requiresPython,
    boolean yanked,
    boolean hasMetadata,
    String metadataSha256) {}
