package dev.kiln.resolver;

import dev.kiln.base.KilnException;

/**
 * Target environments for tests, as {@link TargetEnvironment#probeScript()} prints them. {@link
 * #DEFAULT_BASE} is what the probe printed in Kiln's default base image (Debian bookworm, python3
 * 3.11.2).
 */
public final class Targets {
  /** The probe's output in {@code debian-bookworm-python3.tar}, captured by running it there. */
  public static final String DEFAULT_BASE =
      "{\"data\": \"/usr/local\", \"implementation\": \"cpython\", \"include\":"
          + " \"/usr/include/python3.11\", \"interpreter\": \"/usr/bin/python3\", \"libc\":"
          + " \"glibc\", \"libc_version\": \"2.36\", \"machine\": \"x86_64\", \"platlib\":"
          + " \"/usr/local/lib/python3.11/dist-packages\", \"purelib\":"
          + " \"/usr/local/lib/python3.11/dist-packages\", \"python_version\": \"3.11.2\","
          + " \"scripts\": \"/usr/local/bin\", \"soabi\": \"cpython-311-x86_64-linux-gnu\"}";

  private Targets() {}

  /** Debian bookworm's python3 3.11.2 on x86_64, glibc 2.36: the default base image. */
  public static TargetEnvironment defaultBase() {
    try {
      return TargetEnvironment.fromProbeJson(DEFAULT_BASE);
    } catch (KilnException e) {
      throw new AssertionError(e);
    }
  }

  /** A python:3.12-slim-like target: CPython 3.12.8 on x86_64, glibc 2.36. */
  public static TargetEnvironment python312() {
    return new TargetEnvironment(
        "3.12.8",
        "cpython",
        "cpython-312-x86_64-linux-gnu",
        "x86_64",
        "glibc",
        "2.36",
        "/usr/local/lib/python3.12/site-packages",
        "/usr/local/lib/python3.12/site-packages",
        "/usr/local/bin",
        "/usr/local",
        "/usr/local/include/python3.12",
        "/usr/local/bin/python3");
  }

  /** CPython 3.11 on aarch64 with glibc 2.36. */
  public static TargetEnvironment aarch64() {
    return new TargetEnvironment(
        "3.11.2",
        "cpython",
        "cpython-311-aarch64-linux-gnu",
        "aarch64",
        "glibc",
        "2.36",
        "/usr/local/lib/python3.11/dist-packages",
        "/usr/local/lib/python3.11/dist-packages",
        "/usr/local/bin",
        "/usr/local",
        "/usr/include/python3.11",
        "/usr/bin/python3");
  }

  /** CPython 3.11 on Alpine (musl 1.2) x86_64. */
  public static TargetEnvironment musl() {
    return new TargetEnvironment(
        "3.11.9",
        "cpython",
        "cpython-311-x86_64-linux-musl",
        "x86_64",
        "musl",
        "1.2.5",
        "/usr/lib/python3.11/site-packages",
        "/usr/lib/python3.11/site-packages",
        "/usr/bin",
        "/usr",
        "/usr/include/python3.11",
        "/usr/bin/python3");
  }
}
