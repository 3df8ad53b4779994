package dev.kiln.controlplane;

/** Placeholder main; replaced by the CLI. */
public final class Kiln {
  public static void main(String[] args) {}
}
