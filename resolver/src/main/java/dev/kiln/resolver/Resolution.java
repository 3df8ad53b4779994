package dev.kiln.resolver;

import dev.kiln.base.ErrorCode;
import dev.kiln.base.KilnException;
import java.io.IOException;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Deque;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * One backtracking resolution of a set of requirements, in the manner of pip's resolvelib.
 *
 * <p>Each round picks one undecided project (exact pins first, then the shallowest, then by name,
 * so the result is deterministic) and tries its versions newest first. Pinning a version adds its
 * dependencies as constraints and fails at once if one of them contradicts an earlier choice or
 * leaves a dependency with no usable version. When no version of a project works, the resolver
 * jumps back to the most recent choice among the projects that caused the failure (those whose
 * requirements constrain it, and those behind the failures of its versions), excludes that choice
 * and goes on; choices in between are undone, not excluded, so no solution is lost. A project that
 * fails with nothing left to undo is the error reported, with every reason collected on the way
 * ({@link ResolutionErrors} puts it in words).
 */
final class Resolution {
  /** Where a project's data comes from: the index (and caches) in production. */
  interface Provider {
    /** All versions of a project and the wheel to use of each; not-found when no index has it. */
    ProjectInfo project(String name) throws KilnException, IOException, InterruptedException;

    /** The core metadata of a candidate's wheel and the wheel's sha256. */
    Metadata metadata(Candidate c) throws KilnException, IOException, InterruptedException;

    /**
     * A hint that these requirements are about to be looked at, so their pages and likely metadata
     * can be fetched in parallel; must not fail.
     */
    default void prefetch(List<Requirement> requirements) {}
  }

  /** A wheel's core metadata and its verified sha256. */
  record Metadata(CoreMetadata core, String sha256) {}

  /** A resolved candidate with its wheel's sha256. */
  record Resolved(Candidate candidate, String sha256) {}

  /** A requirement on a project, and who asked for it (null parent: the UDF). */
  record Edge(Requirement req, String parent, String parentLabel) {
    String describe() {
      return "'"
          + req.canonical()
          + "' ("
          + (parent == null ? "requested by the UDF" : "required by " + parentLabel)
          + ")";
    }
  }

  /** Why a version was ruled out, what kind of problem that is, and which decisions it rests on. */
  record Exclusion(Set<String> causes, String reason, ErrorCode kind) {}

  /** Pinning failed: the reason, and the decided projects it depends on. */
  private record Conflict(Set<String> causes, String reason, ErrorCode kind) {}

  /** The choices and constraints at one point of the search; copied before each choice. */
  private static final class State {
    final LinkedHashMap<String, Candidate> pins = new LinkedHashMap<>();
    final Map<String, List<Edge>> edges = new TreeMap<>();
    final Map<String, Set<String>> extras = new HashMap<>();
    final Map<String, Integer> depth = new HashMap<>();
    final Map<String, Map<Version, Exclusion>> excluded = new HashMap<>();

    State copy() {
      State s = new State();
      s.pins.putAll(pins);
      edges.forEach((k, v) -> s.edges.put(k, new ArrayList<>(v)));
      extras.forEach((k, v) -> s.extras.put(k, new TreeSet<>(v)));
      s.depth.putAll(depth);
      excluded.forEach((k, v) -> s.excluded.put(k, new LinkedHashMap<>(v)));
      return s;
    }

    List<Edge> edges(String name) {
      return edges.getOrDefault(name, List.of());
    }

    Map<Version, Exclusion> excluded(String name) {
      return excluded.getOrDefault(name, Map.of());
    }
  }

  /** A choice on the search stack: the state before it, and what was chosen. */
  private record Frame(State before, String name, Candidate candidate) {}

  private final Provider provider;
  private final TargetEnvironment target;
  private final Map<String, String> env;
  private final Version python;
  private final int maxAttempts;
  private final ResolutionErrors errors;
  private final Map<String, ProjectInfo> projects = new HashMap<>();
  private final Map<Candidate, Metadata> metadata = new HashMap<>();
  private final Map<Candidate, Object> dependencies = new HashMap<>();
  private final Map<String, SpecifierSet> specifiers = new HashMap<>();

  private int attempts;

  Resolution(Provider provider, TargetEnvironment target, int maxAttempts, List<String> indexes) {
    this.provider = provider;
    this.target = target;
    this.env = target.markerEnvironment();
    this.maxAttempts = maxAttempts;
    this.errors = new ResolutionErrors(target, indexes);
    Version v = Version.tryParse(target.pythonVersion());
    if (v == null) {
      throw new IllegalArgumentException("target python version " + target.pythonVersion());
    }
    this.python = v;
  }

  /** Resolves the requirements (already filtered by their markers) to one wheel per project. */
  List<Resolved> resolve(List<Requirement> roots)
      throws KilnException, IOException, InterruptedException {
    State state = new State();
    provider.prefetch(roots);
    for (Requirement r : roots) {
      addEdge(state, r, null, null);
      state.depth.put(r.name(), 0);
      state.extras.computeIfAbsent(r.name(), k -> new TreeSet<>()).addAll(r.extras());
    }
    Deque<Frame> frames = new ArrayDeque<>();
    while (true) {
      if (Thread.interrupted()) {
        throw new InterruptedException("resolution interrupted");
      }
      String name = pickNext(state);
      if (name == null) {
        break;
      }
      ProjectInfo info = project(name);
      boolean pinned = false;
      for (Candidate c : candidates(info, state.edges(name), state.excluded(name))) {
        if (++attempts > maxAttempts) {
          throw ResolutionErrors.tooComplex(maxAttempts, name, c);
        }
        Object result = tryPin(state, name, c);
        if (result instanceof State next) {
          frames.push(new Frame(state, name, c));
          state = next;
          pinned = true;
          break;
        }
        Conflict conflict = (Conflict) result;
        state
            .excluded
            .computeIfAbsent(name, k -> new LinkedHashMap<>())
            .put(c.version(), new Exclusion(conflict.causes(), conflict.reason(), conflict.kind()));
      }
      if (pinned) {
        continue;
      }
      Set<String> causes = new LinkedHashSet<>();
      for (Edge e : state.edges(name)) {
        if (e.parent() != null) {
          causes.add(e.parent());
        }
      }
      state.excluded(name).values().forEach(x -> causes.addAll(x.causes()));
      causes.remove(name);
      Frame back = null;
      while (!frames.isEmpty()) {
        Frame f = frames.pop();
        if (causes.contains(f.name())) {
          back = f;
          break;
        }
      }
      KilnException why = failure(name, info, state);
      if (back == null) {
        throw why;
      }
      State restored = back.before().copy();
      Set<String> carried = new LinkedHashSet<>(causes);
      carried.remove(back.name());
      restored
          .excluded
          .computeIfAbsent(back.name(), k -> new LinkedHashMap<>())
          .put(
              back.candidate().version(),
              new Exclusion(carried, "leaves no usable version of '" + name + "'", why.code()));
      state = restored;
    }
    List<Resolved> out = new ArrayList<>();
    for (Candidate c : state.pins.values()) {
      out.add(new Resolved(c, metadata(c).sha256()));
    }
    out.sort(Comparator.comparing(r -> r.candidate().name()));
    return out;
  }

  /** The next undecided project: exact pins first, then the shallowest, then by name. */
  private String pickNext(State s) {
    String best = null;
    int bestPin = 0;
    int bestDepth = 0;
    for (Map.Entry<String, List<Edge>> e : s.edges.entrySet()) {
      String name = e.getKey();
      if (s.pins.containsKey(name)) {
        continue;
      }
      int pin = 1;
      for (Edge edge : e.getValue()) {
        if (spec(edge.req()).exactPin().isPresent()) {
          pin = 0;
        }
      }
      int depth = s.depth.getOrDefault(name, Integer.MAX_VALUE);
      // TreeMap order makes the name the final tie-break.
      if (best == null || pin < bestPin || (pin == bestPin && depth < bestDepth)) {
        best = name;
        bestPin = pin;
        bestDepth = depth;
      }
    }
    return best;
  }

  /**
   * The usable versions of a project under its constraints, newest first. Pre-releases only when a
   * constraint names one, or when nothing else matches; yanked files only when pinned.
   */
  private List<Candidate> candidates(
      ProjectInfo info, List<Edge> edges, Map<Version, Exclusion> excluded) {
    boolean allowPre = false;
    for (Edge e : edges) {
      allowPre |= spec(e.req()).requestsPrereleases();
    }
    List<Candidate> finals = new ArrayList<>();
    List<Candidate> all = new ArrayList<>();
    for (ProjectInfo.Release r : info.releases()) {
      if (excluded.containsKey(r.version()) || !matchesAll(edges, r.version())) {
        continue;
      }
      DistFile f = r.best();
      if (f == null && r.yankedBest() != null && pinnedTo(edges, r.version())) {
        f = r.yankedBest();
      }
      if (f == null) {
        continue;
      }
      Candidate c = new Candidate(info.name(), r.version(), f);
      all.add(c);
      if (!r.version().isPrerelease()) {
        finals.add(c);
      }
    }
    return allowPre || finals.isEmpty() ? all : finals;
  }

  private boolean matchesAll(List<Edge> edges, Version v) {
    for (Edge e : edges) {
      if (!spec(e.req()).contains(v, true)) {
        return false;
      }
    }
    return true;
  }

  private boolean pinnedTo(List<Edge> edges, Version v) {
    for (Edge e : edges) {
      Optional<Version> pin = spec(e.req()).exactPin();
      if (pin.isPresent() && pin.get().equals(v)) {
        return true;
      }
    }
    return false;
  }

  /**
   * Pins {@code c} in a copy of the state and adds what it requires; answers the new state, or the
   * conflict that rules {@code c} out.
   */
  private Object tryPin(State s0, String name, Candidate c)
      throws KilnException, IOException, InterruptedException {
    State s = s0.copy();
    s.pins.put(name, c);
    Deque<String> work = new ArrayDeque<>();
    work.add(name);
    while (!work.isEmpty()) {
      String pkg = work.poll();
      Candidate pc = s.pins.get(pkg);
      Object deps = dependencies(pc);
      if (deps instanceof Conflict unusable) {
        return unusable;
      }
      @SuppressWarnings("unchecked")
      List<Requirement> reqs = (List<Requirement>) deps;
      Set<String> active = s.extras.getOrDefault(pkg, Set.of());
      List<Requirement> applicable = new ArrayList<>();
      for (Requirement d : reqs) {
        if (d.appliesTo(env, active)) {
          applicable.add(d);
        }
      }
      provider.prefetch(applicable);
      for (Requirement d : applicable) {
        String dn = d.name();
        addEdge(s, d, pkg, pc.label());
        s.depth.merge(dn, s.depth.getOrDefault(pkg, 0) + 1, Math::min);
        boolean newExtras = s.extras.computeIfAbsent(dn, k -> new TreeSet<>()).addAll(d.extras());
        Candidate chosen = s.pins.get(dn);
        if (chosen != null) {
          if (!spec(d).contains(chosen.version(), true)) {
            Set<String> causes = new LinkedHashSet<>(List.of(dn, pkg));
            causes.remove(name);
            String contradiction = errors.contradiction(pc, d, chosen, s0.edges(dn));
            return new Conflict(causes, contradiction, ErrorCode.PACKAGE_CONFLICT);
          }
          if (newExtras) {
            work.add(dn);
          }
        } else {
          ProjectInfo info = project(dn);
          if (candidates(info, s.edges(dn), s.excluded(dn)).isEmpty()) {
            Set<String> causes = new LinkedHashSet<>();
            for (Edge e : s.edges(dn)) {
              if (e.parent() != null) {
                causes.add(e.parent());
              }
            }
            s.excluded(dn).values().forEach(x -> causes.addAll(x.causes()));
            causes.remove(name);
            KilnException why = failure(dn, info, s);
            errors.dependencyFailed(why);
            return new Conflict(
                causes,
                pc.label() + " requires '" + d.canonical() + "': " + why.getMessage(),
                why.code());
          }
        }
      }
    }
    return s;
  }

  /**
   * The requirements of a candidate (a list), or the {@link Conflict} that says why it cannot be
   * used (Requires-Python, metadata that does not match its file name, an invalid requirement).
   */
  private Object dependencies(Candidate c) throws KilnException, IOException, InterruptedException {
    Object cached = dependencies.get(c);
    if (cached != null) {
      return cached;
    }
    Object result;
    Metadata md = metadata(c);
    CoreMetadata core = md.core();
    Version declared = Version.tryParse(core.version());
    if (!Requirement.normalizeName(core.name()).equals(c.name())
        || declared == null
        || !declared.equals(c.version())) {
      result =
          new Conflict(
              Set.of(),
              c.label()
                  + " cannot be used: its metadata names '"
                  + core.name()
                  + " "
                  + core.version()
                  + "', not what its file name "
                  + c.file().filename()
                  + " says",
              ErrorCode.PACKAGE_INDEX_UNAVAILABLE);
    } else if (!core.requiresPython().isEmpty()
        && !ProjectInfo.requiresPythonAllows(core.requiresPython(), python)) {
      result =
          new Conflict(
              Set.of(),
              c.label()
                  + " requires Python "
                  + core.requiresPython()
                  + " (the target runs "
                  + target.pythonVersion()
                  + ")",
              ErrorCode.NO_COMPATIBLE_WHEEL);
    } else {
      List<Requirement> reqs = new ArrayList<>();
      Conflict problem = null;
      for (String line : core.requiresDist()) {
        try {
          reqs.add(Requirement.parse(line));
        } catch (KilnException e) {
          problem =
              new Conflict(
                  Set.of(),
                  c.label() + " cannot be used: its metadata has " + e.getMessage(),
                  ErrorCode.PACKAGE_INDEX_UNAVAILABLE);
          break;
        }
      }
      result = problem != null ? problem : List.copyOf(reqs);
    }
    dependencies.put(c, result);
    return result;
  }

  private Metadata metadata(Candidate c) throws KilnException, IOException, InterruptedException {
    Metadata m = metadata.get(c);
    if (m == null) {
      m = provider.metadata(c);
      metadata.put(c, m);
    }
    return m;
  }

  private ProjectInfo project(String name) throws KilnException, IOException, InterruptedException {
    ProjectInfo p = projects.get(name);
    if (p == null) {
      p = provider.project(name);
      projects.put(name, p);
    }
    return p;
  }

  private SpecifierSet spec(Requirement r) {
    return specifiers.computeIfAbsent(r.specifier(), k -> r.specifierSet());
  }

  private static void addEdge(State s, Requirement r, String parent, String parentLabel) {
    Edge e = new Edge(r, parent, parentLabel);
    List<Edge> list = s.edges.computeIfAbsent(r.name(), k -> new ArrayList<>());
    if (!list.contains(e)) {
      list.add(e);
    }
  }

  /** The user-facing error for a project with no usable version in {@code s}. */
  private KilnException failure(String name, ProjectInfo info, State s) {
    List<Edge> edges = s.edges(name);
    return errors.noUsableVersion(
        name,
        info,
        edges,
        v -> matchesAll(edges, v),
        !candidates(info, edges, Map.of()).isEmpty(),
        s.excluded(name));
  }
}
