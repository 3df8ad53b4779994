package dev.kiln.controlplane;

import dev.kiln.base.KilnException;
import dev.kiln.definition.ContentKey;
import dev.kiln.definition.ContentKeys;
import dev.kiln.definition.Tenant;
import dev.kiln.definition.UdfDefinition;
import dev.kiln.image.Runtimes;
import dev.kiln.worker.RunnerFiles;
import dev.kiln.worker.Tokens;
import io.grpc.Context;
import io.grpc.Deadline;
import java.time.Duration;
import java.time.InstantSource;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What both front doors do with a UDF definition, whichever wire it came on: check it, key it, find
 * the tenant's resource for the key (the hot path: a map lookup) or make one and start its
 * pipeline, and answer with the stable endpoint and a token — on a cold start after waiting at most
 * {@code apply-wait} (never past the call's deadline), so that errors in the UDF come back on the
 * RPC.
 */
final class UdfRequests {
  private static final Logger log = LoggerFactory.getLogger(UdfRequests.class);

  /** What a request is answered with. */
  interface Answer {
    /** The UDF can be called: at {@code endpoint} with {@code headers}. */
    void ready(ContentKey key, Map<String, String> headers, boolean hot);

    /** It cannot: a failure known before the answer. */
    void failed(KilnException e);
  }

  private final UdfRegistry registry;
  private final Definitions definitions;
  private final Pipeline pipeline;
  private final Tokens tokens;
  private final Duration applyWait;
  private final InstantSource clock;

  UdfRequests(
      UdfRegistry registry,
      Definitions definitions,
      Pipeline pipeline,
      Tokens tokens,
      Duration applyWait,
      InstantSource clock) {
    this.registry = registry;
    this.definitions = definitions;
    this.pipeline = pipeline;
    this.tokens = tokens;
    this.applyWait = applyWait;
    this.clock = clock;
  }

  /**
   * Answers a request for {@code definition} in a sandbox of {@code sizing} for {@code tenant} (and
   * its worker {@code owner}, or null): at once on the hot path, after a brief wait on a cold one.
   *
   * @throws KilnException what is wrong with the definition (nothing was started)
   */
  void request(
      Tenant tenant,
      String owner,
      UdfDefinition definition,
      Sizing sizing,
      UdfEnv.Entry env,
      UdfEgress egress,
      Answer answer)
      throws KilnException {
    Runtimes.Runtime runtime = pipeline.check(definition);
    ContentKey key = key(definition, runtime, sizing, env, egress);
    CallMetadata.RESPONSE_KEY.get().set(key.hex());
    UdfRegistry.Obtained obtained =
        obtain(tenant, key, definition, runtime, sizing, env.checked(), egress, owner);
    UdfResource resource = obtained.resource();
    Map<String, String> headers = Map.of(Tokens.HEADER, tokens.issue(tenant, key));
    if (obtained.created()) {
      // Kept before the token goes out, so that a restart never meets a token it cannot serve.
      definitions.put(
          new Definitions.Entry(tenant, key, definition, sizing, owner, egress, clock.instant()));
    } else {
      KilnException failure = resource.failure();
      if (failure != null) {
        answer.failed(failure);
      } else {
        answer.ready(key, headers, true);
      }
      return;
    }
    log.info(
        "udf {} tenant={} handler={} size={}: new, provisioning",
        key.shortForm(),
        tenant,
        definition.handler(),
        sizing.name());
    awaitBriefly(resource, () -> answer.ready(key, headers, false), answer);
  }

  /**
   * The resource of a kept definition, started again when it is not running (after a restart, an
   * idle suspension, a lost sandbox) or the one running or starting; returns at once.
   */
  UdfRegistry.Obtained revive(Definitions.Entry kept, UdfEnv.Entry env) throws KilnException {
    Runtimes.Runtime runtime = pipeline.check(kept.definition());
    UdfRegistry.Obtained obtained =
        obtain(
            kept.tenant(),
            kept.key(),
            kept.definition(),
            runtime,
            kept.sizing(),
            env.checked(),
            kept.egress(),
            kept.owner());
    if (obtained.created()) {
      log.info(
          "udf {} tenant={} handler={} size={}: started again for a call",
          kept.key().shortForm(),
          kept.tenant(),
          kept.definition().handler(),
          kept.sizing().name());
    }
    return obtained;
  }

  /** The tenant's resource for the key: the one there is, or a new one being provisioned. */
  private UdfRegistry.Obtained obtain(
      Tenant tenant,
      ContentKey key,
      UdfDefinition definition,
      Runtimes.Runtime runtime,
      Sizing sizing,
      Map<String, String> env,
      UdfEgress egress,
      String owner)
      throws KilnException {
    return registry.obtain(
        tenant,
        key,
        () -> new UdfResource(tenant, key, definition, runtime, sizing, env, egress, owner, clock));
  }

  /**
   * Resources (registered nowhere, nothing started) of the kept definitions that ask for packages,
   * most recently answered first, at most {@code max}: what a server knows its users' package sets
   * from after a restart or a prewarm. Definitions of a runtime this server no longer has are left
   * out.
   */
  List<UdfResource> recentWithPackages(int max) {
    List<UdfResource> out = new ArrayList<>();
    List<Definitions.Entry> recent =
        definitions.all().stream()
            .filter(e -> !e.definition().requirements().isEmpty())
            .sorted(Comparator.comparing(Definitions.Entry::answered).reversed())
            .limit(max)
            .toList();
    for (Definitions.Entry e : recent) {
      try {
        Runtimes.Runtime runtime = pipeline.check(e.definition());
        // Without its staged imports: their URLs were presigned for one query long gone, and a
        // zygote needs only the packages.
        UdfDefinition packagesOnly =
            new UdfDefinition(e.definition().spec(), e.definition().requirements(), List.of());
        out.add(
            new UdfResource(
                e.tenant(),
                e.key(),
                packagesOnly,
                runtime,
                e.sizing(),
                Map.of(),
                e.egress(),
                e.owner(),
                clock));
      } catch (KilnException ex) {
        // Its runtime is gone from this server's configuration: nothing to keep ready for it.
      }
    }
    return out;
  }

  /** Forgets the kept definitions of the tenant's worker {@code owner} (it was dropped). */
  void forgetOwned(Tenant tenant, String owner) {
    definitions.removeOwned(tenant, owner);
  }

  /**
   * Forgets the UDFs of the tenant's worker {@code owner} that another replica dropped; how many.
   */
  int forgetOwnedHere(Tenant tenant, String owner) {
    return definitions.removeOwnedHere(tenant, owner);
  }

  /**
   * The key of a UDF resource: what Databend asked for, on this runtime and runner version (the
   * package lock and the imports' content are resolved by the pipeline and go into the image's key,
   * so the hot path never waits on an index or a download), the sandbox size when it is not the
   * server's own, the version (never the values) of the UDF's environment when it has one, and its
   * egress allow-list when it has one: a new size, new values or a new list make a new resource.
   */
  static ContentKey key(
      UdfDefinition definition,
      Runtimes.Runtime runtime,
      Sizing sizing,
      UdfEnv.Entry env,
      UdfEgress egress) {
    ContentKey key = definition.key(runtime.digest(), RunnerFiles.version());
    if (!sizing.isDefault()) {
      key =
          ContentKeys.variant(
              key,
              "size="
                  + sizing.name()
                  + ","
                  + sizing.cpus()
                  + ","
                  + sizing.memoryBytes()
                  + ","
                  + sizing.runners());
    }
    if (!env.vars().isEmpty()) {
      key = ContentKeys.variant(key, "env-version=" + env.version());
    }
    if (!egress.isEmpty()) {
      key = ContentKeys.variant(key, egress.keyPart());
    }
    return key;
  }

  /** Waits for a cold resource until apply-wait or shortly before the call's deadline. */
  private void awaitBriefly(UdfResource resource, Runnable ready, Answer answer) {
    long waitNanos = applyWait.toNanos();
    Deadline deadline = Context.current().getDeadline();
    if (deadline != null) {
      // Leave half a second for the answer to travel back.
      waitNanos = Math.min(waitNanos, deadline.timeRemaining(TimeUnit.NANOSECONDS) - 500_000_000L);
    }
    if (waitNanos <= 0) {
      ready.run();
      return;
    }
    resource
        .ready()
        .copy()
        .completeOnTimeout(null, waitNanos, TimeUnit.NANOSECONDS)
        .whenComplete(
            (pool, error) -> {
              KilnException failure = resource.failure();
              if (failure != null) {
                answer.failed(failure);
              } else {
                ready.run();
              }
            });
  }
}
