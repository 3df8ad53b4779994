package dev.kiln.worker;

import java.util.ArrayDeque;
import java.util.List;

/** The last lines a UDF printed, bounded in line count and line length. */
final class OutputTail {

  /** Longer lines are cut; a progress bar without newlines must not grow without bound. */
  static final int MAX_LINE_CHARS = 1000;

  private final int capacity;
  private final ArrayDeque<String> lines;

  OutputTail(int capacity) {
    this.capacity = capacity;
    this.lines = new ArrayDeque<>(Math.max(capacity, 1));
  }

  synchronized void add(String line) {
    if (capacity == 0) {
      return;
    }
    if (lines.size() == capacity) {
      lines.removeFirst();
    }
    lines.addLast(line);
  }

  synchronized List<String> lines() {
    return List.copyOf(lines);
  }

  /** The last {@code max} lines, indented, for an error message; empty when there are none. */
  String excerpt(int max) {
    List<String> all = lines();
    List<String> last = all.subList(Math.max(0, all.size() - max), all.size());
    if (last.isEmpty()) {
      return "";
    }
    StringBuilder sb = new StringBuilder();
    for (String line : last) {
      sb.append("\n  ").append(line.length() > 300 ? line.substring(0, 300) + "…" : line);
    }
    return sb.toString();
  }
}
