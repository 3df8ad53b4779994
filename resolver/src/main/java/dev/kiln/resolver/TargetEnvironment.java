package dev.kiln.resolver;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * What the base image's Python is; read by running {@link #probeScript()} with that Python.
 *
 * @param pythonVersion full version, e.g. {@code 3.11.2}
 * @param implementation {@code sys.implementation.name}, e.g. {@code cpython}
 * @param soabi {@code sysconfig} SOABI, e.g. {@code cpython-311-x86_64-linux-gnu}
 * @param machine {@code platform.machine()}, e.g. {@code x86_64} or {@code aarch64}
 * @param libc {@code glibc} or {@code musl} ("" when unknown)
 * @param libcVersion e.g. {@code 2.36} ("" when unknown)
 * @param purelib where pure-Python packages go (on {@code sys.path}, processes {@code .pth})
 * @param platlib where packages with extensions go
 * @param scripts where console scripts go
 * @param data the {@code data} scheme path (prefix of {@code .data/data} files)
 * @param include the {@code include} scheme path (for {@code .data/headers})
 * @param interpreter the interpreter path for script shebangs
 */
public record TargetEnvironment(
    String pythonVersion,
    String implementation,
    String soabi,
    String machine,
    String libc,
    String libcVersion,
    String purelib,
    String platlib,
    String scripts,
    String data,
    String include,
    String interpreter) {

  private static final ObjectMapper JSON =
      JsonMapper.builder().enable(SerializationFeature.ORDER_MAP_ENTRIES_BY_KEYS).build();
  private static final Pattern PYTHON_VERSION = Pattern.compile("(\\d+)\\.(\\d+)(\\.\\d+.*)?");
  private static final Pattern LIBC_VERSION = Pattern.compile("(\\d+)\\.(\\d+).*");
  private static final List<String> FIELDS =
      List.of(
          "python_version",
          "implementation",
          "soabi",
          "machine",
          "libc",
          "libc_version",
          "purelib",
          "platlib",
          "scripts",
          "data",
          "include",
          "interpreter");

  public TargetEnvironment {
    Objects.requireNonNull(pythonVersion, "pythonVersion");
    Objects.requireNonNull(implementation, "implementation");
    Objects.requireNonNull(soabi, "soabi");
    Objects.requireNonNull(machine, "machine");
    Objects.requireNonNull(libc, "libc");
    Objects.requireNonNull(libcVersion, "libcVersion");
    Objects.requireNonNull(purelib, "purelib");
    Objects.requireNonNull(platlib, "platlib");
    Objects.requireNonNull(scripts, "scripts");
    Objects.requireNonNull(data, "data");
    Objects.requireNonNull(include, "include");
    Objects.requireNonNull(interpreter, "interpreter");
    if (!PYTHON_VERSION.matcher(pythonVersion).matches()) {
      throw new IllegalArgumentException(
          "python version must be MAJOR.MINOR[.PATCH]: " + pythonVersion);
    }
  }

  /**
   * Standard-library-only Python source that prints this record as one JSON object. Run it with the
   * base image's {@code python3} (the one that will run the UDF).
   */
  public static String probeScript() {
    return """
        import json, os, platform, sys, sysconfig

        def libc():
            # glibc names itself through confstr; musl has no such call, but its dynamic
            # loader prints "Version X.Y.Z" when run without arguments.
            try:
                name, version = os.confstr("CS_GNU_LIBC_VERSION").split(" ", 1)
                if name == "glibc":
                    return "glibc", version
            except (AttributeError, OSError, ValueError):
                pass
            import glob, subprocess
            for loader in sorted(glob.glob("/lib/ld-musl-*.so.1")):
                try:
                    err = subprocess.run([loader], stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE).stderr.decode()
                except OSError:
                    continue
                for line in err.splitlines():
                    if line.startswith("Version "):
                        return "musl", line.split()[1]
            return "", ""

        name, version = libc()
        paths = sysconfig.get_paths()
        print(json.dumps({
            "python_version": platform.python_version(),
            "implementation": sys.implementation.name,
            "soabi": sysconfig.get_config_var("SOABI") or "",
            "machine": platform.machine(),
            "libc": name,
            "libc_version": version,
            "purelib": paths["purelib"],
            "platlib": paths["platlib"],
            "scripts": paths["scripts"],
            "data": paths["data"],
            "include": paths["include"],
            "interpreter": sys.executable,
        }, sort_keys=True))
        """;
  }

  /** Reads the JSON {@link #probeScript()} printed; the message says what is missing. */
  public static TargetEnvironment fromProbeJson(String json) throws KilnException {
    JsonNode root;
    try {
      root = JSON.readTree(json == null ? "" : json.strip());
    } catch (JsonProcessingException e) {
      throw new KilnException(
          ErrorCode.BASE_IMAGE_UNAVAILABLE,
          "the Python probe did not print JSON ("
              + e.getOriginalMessage()
              + "); output was: "
              + abbreviate(json));
    }
    if (root == null || !root.isObject()) {
      throw new KilnException(
          ErrorCode.BASE_IMAGE_UNAVAILABLE,
          "the Python probe printed no JSON object; output was: " + abbreviate(json));
    }
    List<String> missing = new ArrayList<>();
    Map<String, String> v = new LinkedHashMap<>();
    for (String f : FIELDS) {
      JsonNode n = root.get(f);
      if (n == null || !n.isTextual()) {
        missing.add(f);
      } else {
        v.put(f, n.textValue());
      }
    }
    if (!missing.isEmpty()) {
      throw new KilnException(
          ErrorCode.BASE_IMAGE_UNAVAILABLE,
          "the Python probe's output lacks "
              + String.join(", ", missing)
              + ": "
              + abbreviate(json));
    }
    if (!PYTHON_VERSION.matcher(v.get("python_version")).matches()) {
      throw new KilnException(
          ErrorCode.BASE_IMAGE_UNAVAILABLE,
          "the Python probe reported version '" + v.get("python_version") + "'; expected X.Y.Z");
    }
    return new TargetEnvironment(
        v.get("python_version"),
        v.get("implementation"),
        v.get("soabi"),
        v.get("machine"),
        v.get("libc"),
        v.get("libc_version"),
        v.get("purelib"),
        v.get("platlib"),
        v.get("scripts"),
        v.get("data"),
        v.get("include"),
        v.get("interpreter"));
  }

  /** This record in the probe's JSON form (keys sorted): the inverse of {@link #fromProbeJson}. */
  public String toProbeJson() {
    ObjectNode n = JSON.createObjectNode();
    n.put("data", data);
    n.put("implementation", implementation);
    n.put("include", include);
    n.put("interpreter", interpreter);
    n.put("libc", libc);
    n.put("libc_version", libcVersion);
    n.put("machine", machine);
    n.put("platlib", platlib);
    n.put("purelib", purelib);
    n.put("python_version", pythonVersion);
    n.put("scripts", scripts);
    n.put("soabi", soabi);
    try {
      return JSON.writeValueAsString(n);
    } catch (JsonProcessingException e) {
      throw new IllegalStateException("cannot serialise a JSON tree", e);
    }
  }

  /** The major.minor version, e.g. {@code "3.11"}. */
  public String pythonMinor() {
    Matcher m = PYTHON_VERSION.matcher(pythonVersion);
    if (!m.matches()) {
      throw new IllegalStateException(pythonVersion);
    }
    return m.group(1) + "." + m.group(2);
  }

  private int major() {
    return Integer.parseInt(pythonMinor().split("\\.")[0]);
  }

  private int minor() {
    return Integer.parseInt(pythonMinor().split("\\.")[1]);
  }

  /** A short description for messages: {@code CPython 3.11.2, glibc 2.36, x86_64}. */
  public String describe() {
    String impl = implementation.equals("cpython") ? "CPython" : implementation;
    String c = libc.isEmpty() ? "unknown libc" : libc + " " + libcVersion;
    return impl + " " + pythonVersion + ", " + c + ", " + machine;
  }

  /** PEP 508 marker variables for this Python on Linux. */
  public Map<String, String> markerEnvironment() {
    Map<String, String> env = new LinkedHashMap<>();
    env.put("implementation_name", implementation);
    env.put("implementation_version", pythonVersion);
    env.put("os_name", "posix");
    env.put("platform_machine", machine);
    // The kernel seen inside the sandbox is not the build host's: these are unknown here.
    env.put("platform_release", "");
    env.put("platform_version", "");
    env.put("platform_python_implementation", pythonImplementation());
    env.put("platform_system", "Linux");
    env.put("python_full_version", pythonVersion);
    env.put("python_version", pythonMinor());
    env.put("sys_platform", "linux");
    return env;
  }

  private String pythonImplementation() {
    return switch (implementation) {
      case "cpython" -> "CPython";
      case "pypy" -> "PyPy";
      case "graalpy" -> "GraalVM";
      default -> implementation;
    };
  }

  /**
   * Wheel tags this Python accepts, most preferred first, in the order pip ({@code
   * packaging.tags.sys_tags}) uses: {@code cp311-cp311-<platform>}, {@code cp311-abi3-...}, {@code
   * cp311-none-...}, older {@code abi3}, then {@code py3*-none-<platform>} and {@code
   * py3*-none-any}.
   */
  public List<String> compatibleTags() {
    Set<String> tags = new LinkedHashSet<>();
    List<String> platforms = platformTags();
    String nodot = "" + major() + minor();
    if (implementation.equals("cpython")) {
      String interpreter = "cp" + nodot;
      String abi = cpythonAbi();
      boolean freeThreaded = abi.endsWith("t");
      for (String p : platforms) {
        tags.add(interpreter + "-" + abi + "-" + p);
      }
      if (!freeThreaded) {
        for (String p : platforms) {
          tags.add(interpreter + "-abi3-" + p);
        }
      }
      for (String p : platforms) {
        tags.add(interpreter + "-none-" + p);
      }
      if (!freeThreaded) {
        for (int m = minor() - 1; m >= 2; m--) {
          for (String p : platforms) {
            tags.add("cp" + major() + m + "-abi3-" + p);
          }
        }
      }
    } else {
      String interpreter = interpreterShortName() + nodot;
      String abi = soabi.isEmpty() ? "none" : soabi.replace('-', '_').replace('.', '_');
      for (String p : platforms) {
        tags.add(interpreter + "-" + abi + "-" + p);
      }
      for (String p : platforms) {
        tags.add(interpreter + "-none-" + p);
      }
    }
    List<String> pyVersions = new ArrayList<>();
    pyVersions.add("py" + nodot);
    pyVersions.add("py" + major());
    for (int m = minor() - 1; m >= 0; m--) {
      pyVersions.add("py" + major() + m);
    }
    for (String py : pyVersions) {
      for (String p : platforms) {
        tags.add(py + "-none-" + p);
      }
    }
    tags.add(
        (implementation.equals("cpython") ? "cp" : interpreterShortName()) + nodot + "-none-any");
    for (String py : pyVersions) {
      tags.add(py + "-none-any");
    }
    return List.copyOf(tags);
  }

  private String interpreterShortName() {
    return switch (implementation) {
      case "cpython" -> "cp";
      case "pypy" -> "pp";
      case "ironpython" -> "ip";
      case "jython" -> "jy";
      default -> implementation;
    };
  }

  /** {@code cp311}, or {@code cp311d} / {@code cp313t} for debug and free-threaded builds. */
  private String cpythonAbi() {
    String[] parts = soabi.split("-");
    if (parts.length >= 2 && parts[0].equals("cpython") && parts[1].matches("\\d+[a-z]*")) {
      return "cp" + parts[1];
    }
    return "cp" + major() + minor();
  }

  /**
   * Platform tags, most specific first: {@code manylinux_2_N} from the target's glibc down to the
   * oldest (with the legacy {@code manylinux2014/2010/1} aliases), or {@code musllinux_1_N}, then
   * {@code linux_<arch>}.
   */
  List<String> platformTags() {
    String arch = machine.replace('-', '_').replace('.', '_');
    if (arch.equals("amd64")) {
      arch = "x86_64";
    } else if (arch.equals("arm64")) {
      arch = "aarch64";
    }
    List<String> out = new ArrayList<>();
    Matcher v = LIBC_VERSION.matcher(libcVersion);
    if (v.matches() && libc.equals("glibc") && v.group(1).equals("2")) {
      int top = Integer.parseInt(v.group(2));
      // manylinux1 (glibc 2.5) only ever existed for x86; elsewhere manylinux2014 (2.17) is first.
      int bottom = arch.equals("x86_64") || arch.equals("i686") ? 5 : 17;
      for (int m = top; m >= bottom; m--) {
        out.add("manylinux_2_" + m + "_" + arch);
        switch (m) {
          case 17 -> out.add("manylinux2014_" + arch);
          case 12 -> out.add("manylinux2010_" + arch);
          case 5 -> out.add("manylinux1_" + arch);
          default -> {}
        }
      }
    } else if (v.matches() && libc.equals("musl") && v.group(1).equals("1")) {
      for (int m = Integer.parseInt(v.group(2)); m >= 0; m--) {
        out.add("musllinux_1_" + m + "_" + arch);
      }
    }
    out.add("linux_" + arch);
    return out;
  }

  private static String abbreviate(String s) {
    if (s == null) {
      return "(nothing)";
    }
    String t = s.strip();
    return t.length() > 200 ? t.substring(0, 197) + "..." : t;
  }
}
