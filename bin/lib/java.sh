# Sourced by bin/* scripts: finds a JDK >= 21 and exports JAVA_HOME.
# Looks at $JAVA_HOME, `java` on PATH, then the usual install locations.

kiln_java_version() { # prints the feature version of a java binary, e.g. 17 or 25
  "$1" -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p' | head -1
}

kiln_find_java() {
  local min="${1:-21}" candidate version
  local candidates=()
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(readlink -f "$(command -v java)")")
  fi
  for candidate in /usr/lib/jvm/*/bin/java /opt/java/*/bin/java /opt/*jdk*/bin/java \
    "$HOME"/.sdkman/candidates/java/*/bin/java "$HOME"/.jdks/*/bin/java \
    /Library/Java/JavaVirtualMachines/*/Contents/Home/bin/java; do
    [[ -x "$candidate" ]] && candidates+=("$candidate")
  done
  for candidate in "${candidates[@]}"; do
    [[ -x "$candidate" ]] || continue
    version="$(kiln_java_version "$candidate")"
    if [[ -n "$version" && "$version" -ge "$min" ]]; then
      # javac must be there too: we build from source.
      if [[ -x "$(dirname "$candidate")/javac" ]]; then
        JAVA_HOME="$(cd "$(dirname "$candidate")/.." && pwd)"
        export JAVA_HOME
        return 0
      fi
    fi
  done
  echo "kiln: no JDK ${min} or newer found (looked at \$JAVA_HOME, PATH and /usr/lib/jvm)." >&2
  echo "kiln: install one (e.g. Temurin 21+) and set JAVA_HOME to it." >&2
  return 1
}

# JVM flags Kiln needs on the chosen JDK (call after kiln_find_java), one per line.
kiln_java_flags() {
  echo "--add-opens=java.base/java.nio=ALL-UNNAMED"
  # RocksDB loads its native library through JNI.
  echo "--enable-native-access=ALL-UNNAMED"
  # Netty 4.2 turns sun.misc.Unsafe off on JDK 25+, and Arrow's Netty allocator needs it.
  echo "-Dio.netty.noUnsafe=false"
  # Netty's pooled chunks then come from malloc, not zeroed by Java first (see Kiln.main).
  echo "-Dio.netty.tryReflectionSetAccessible=true"
  if [[ "$(kiln_java_version "$JAVA_HOME/bin/java")" -ge 23 ]]; then
    # Netty still uses sun.misc.Unsafe; say so, instead of a warning on every start.
    echo "--sun-misc-unsafe-memory-access=allow"
  fi
}
