package dev.kiln.base;

/**
 * Every error Kiln reports, numbered by kind: 1xx the user's input (fix the request or the UDF),
 * 2xx internal (a Kiln bug), 3xx resources (the machine or the sandbox is short of something, or
 * busy), 4xx external systems (a registry, a package index, a stage). Numbers never change meaning
 * and are never reused; a code that is retired leaves a gap.
 *
 * <p>Each edge maps codes to its wire status in one place: the control plane to gRPC {@code
 * Status}, the worker to Flight {@code CallStatus}. The user sees the message, which says what was
 * wrong and what to do; causes are logged, never sent.
 */
public enum ErrorCode {
  /** The UDF spec (or the definition Databend sent) is malformed or names an invalid value. */
  INVALID_SPEC(100),
  /** The code defines no function of the handler's name. */
  HANDLER_NOT_DEFINED(101),
  /** A declared argument or result type cannot be computed by the runner. */
  UNSUPPORTED_TYPE(102),
  /** The spec imports a file the request carries no URL and tag for. */
  IMPORT_MISMATCH(104),
  /** The UDF code does not load (syntax error, failing import, handler not callable). */
  UDF_LOAD_FAILED(105),
  /** A staged import cannot be fetched with the URL given (4xx answer, malformed URL). */
  IMPORT_FAILED(106),
  /** A wheel the packages resolved to cannot be installed (damaged, not a wheel). */
  PACKAGES_UNRESOLVABLE(107),
  /** No package index has a project of that name. */
  PACKAGE_NOT_FOUND(108),
  /** The project has no wheel for the base image's Python and platform (or only sdists). */
  NO_COMPATIBLE_WHEEL(109),
  /** No version of a project matches its version constraint. */
  NO_MATCHING_VERSION(110),
  /** No versions satisfy all requirements together. */
  PACKAGE_CONFLICT(111),
  /** The resolver tried too many combinations and gave up. */
  RESOLUTION_TOO_COMPLEX(112),
  /** A requirement string is not valid PEP 508 (or a version, specifier or marker in it). */
  INVALID_REQUIREMENT(113),
  /** The UDF raised, or returned a value its result type cannot hold. */
  UDF_RAISED(114),
  /** A call's columns do not match the UDF's declared arguments. */
  ARGUMENTS_MISMATCH(115),
  /** A batch took longer than the batch timeout. */
  BATCH_TIMEOUT(116),
  /** A Flight call carries no Kiln token. */
  TOKEN_MISSING(117),
  /** A Flight call's token was not issued by this Kiln server (damaged, or another secret). */
  TOKEN_INVALID(118),
  /** A Flight call comes from another tenant than its token's. */
  TENANT_MISMATCH(119),
  /** A Flight call names a UDF resource this server does not know. */
  UDF_NOT_FOUND(120),
  /** A call is malformed: a bad descriptor or header, or a handler its token is not for. */
  INVALID_CALL(121),
  /** The caller cancelled the call. */
  CALL_CANCELLED(122),
  /** Kiln's own configuration (flags, config file) is invalid. */
  INVALID_CONFIGURATION(123),
  /** A worker option (size, auto_suspend, …) is unknown or has a bad value. */
  INVALID_WORKER_OPTION(124),
  /** A worker of that name exists already (and the request did not say IF NOT EXISTS). */
  WORKER_EXISTS(125),
  /** The tenant has no worker of that name. */
  WORKER_NOT_FOUND(126),
  /** The worker is suspended and does not resume by itself (auto_resume = false). */
  WORKER_SUSPENDED(127),

  /** A bug in Kiln; the server log has the details. */
  INTERNAL(200),

  /** The UDF's sandbox cannot serve now (starting, stopped, could not start). */
  SANDBOX_UNAVAILABLE(300),
  /** The Kiln server is shutting down. */
  SHUTTING_DOWN(301),
  /** A runner process died while computing (a crash, or its memory limit). */
  RUNNER_CRASHED(303),
  /** The node's sandbox budget (count or memory) is used up by sandboxes that are all busy. */
  NODE_BUDGET_EXHAUSTED(304),

  /** The base image cannot be read, pulled or described. */
  BASE_IMAGE_UNAVAILABLE(400),
  /** The UDF's image could not be built or stored. */
  IMAGE_BUILD_FAILED(401),
  /** A staged import cannot be fetched now (5xx answer, network, local disk); retry. */
  IMPORT_UNAVAILABLE(402),
  /** A package index cannot be read now; retry, or check the index settings. */
  PACKAGE_INDEX_UNAVAILABLE(403),
  /** A file downloaded from a package index does not have the sha256 the index promised. */
  PACKAGE_HASH_MISMATCH(404),
  /** An OCI registry cannot be reached, or refused a push; retry, or check the registry. */
  REGISTRY_UNAVAILABLE(405);

  /** What kind of error a code is, from its hundreds digit. */
  public enum Kind {
    /** 1xx: the caller can fix it by changing the request or the UDF. */
    USER_INPUT,
    /** 2xx: a bug in Kiln. */
    INTERNAL,
    /** 3xx: a sandbox or the machine cannot serve now. */
    RESOURCES,
    /** 4xx: a system Kiln depends on failed. */
    EXTERNAL
  }

  private final int number;

  ErrorCode(int number) {
    this.number = number;
  }

  /** The stable number users and logs see, e.g. {@code KILN-105}. */
  public int number() {
    return number;
  }

  public Kind kind() {
    return switch (number / 100) {
      case 1 -> Kind.USER_INPUT;
      case 2 -> Kind.INTERNAL;
      case 3 -> Kind.RESOURCES;
      case 4 -> Kind.EXTERNAL;
      default -> throw new AssertionError("code " + number + " has no kind");
    };
  }

  /** True for errors the caller can fix by changing the request or the UDF. */
  public boolean isUserError() {
    return kind() == Kind.USER_INPUT;
  }

  /** {@code KILN-<number>}, as shown to users. */
  public String label() {
    return "KILN-" + number;
  }
}
