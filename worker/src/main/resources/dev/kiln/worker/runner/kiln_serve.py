"""Kiln's runner, serving: loads the UDF, then computes the batches the worker sends.

`python3 kiln_runner.py serve` lands here. Loads $KILN_UDF_DIR/udf.py as module "udf" (with its
udf.meta, import directory and memory limit), says READY (or LOAD_ERROR), then answers each BATCH
with a RESULT or a BATCH_ERROR until stdin closes (PROTOCOL.md). `pooled` first says WAITING and
takes the UDF's files and environment from a LOAD frame (a warm sandbox no UDF had before). Plain
functions are called straight through map(); kiln_calls.py, for decorator options and error
messages, is imported on first use.
"""

import array
import faulthandler
import os
import struct
import sys

from kiln_columns import decode_column, encode_column, result_type
from kiln_wire import (
    BATCH, BATCH_ERROR, BATCH_HEAD, FIXED, LOAD, LOAD_ERROR, READY, RESULT, RESULT_HEAD, WAITING,
    RUNNER_PROTOCOL, WIDTHS, Bad, BatchError, Channel, exception_name, exception_text,
    last_udf_frame, runner_module, sync_output, udf_file_name,
)


def calls():
    """kiln_calls.py: decorator options, and the messages for calls and results that failed."""
    return runner_module("kiln_calls")


class LoadError(Exception):
    """The UDF code could not be loaded; carries what the user needs to fix it."""

    def __init__(self, type_name, message, line=None, text=None):
        Exception.__init__(self, message)
        self.type_name = type_name
        self.message = message
        self.line = line
        self.text = text


# ---------------------------------------------------------------- loading


class Udf:
    """The handler and how to call it: plain, or with the options of a databend_udf decorator."""

    def __init__(self, handler, func, arity, path, options):
        self.handler = handler
        self.func = func
        self.arity = arity
        self.path = path
        self.skip_null = bool(options.get("skip_null"))
        self.batch_mode = bool(options.get("batch_mode"))
        self.io_threads = int(options.get("io_threads") or 0)
        self.on_error_null = options.get("on_error") == "null"
        self.declared = options.get("declared")
        self.plain = not (self.skip_null or self.batch_mode or self.io_threads > 1
                          or self.on_error_null)
        self.executor = None


def load_udf(udf_dir):
    """Executes udf.py as module "udf" and returns the Udf to call."""
    meta = read_meta(os.path.join(udf_dir, "udf.meta"))
    handler = meta["handler"][0]
    arity = len(meta.get("input_type", []))
    result = meta.get("result_type", ["NULL"])[0]
    path = os.path.join(udf_dir, "udf.py")
    with open(path, "rb") as f:
        source = f.read()

    module = type(sys)("udf")
    module.__file__ = path
    sys.modules["udf"] = module
    try:
        code = compile(source, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        raise LoadError(type(e).__name__, e.msg, e.lineno, (e.text or "").strip() or None)
    try:
        exec(code, module.__dict__)
    except BaseException as e:  # SystemExit and friends at import are load errors too
        frame = last_udf_frame(e.__traceback__, path)
        raise LoadError(exception_name(e), exception_text(e),
                        frame.lineno if frame else None, frame.line if frame else None)

    func = module.__dict__.get(handler)
    if func is None:
        func = decorated_named(module, handler)
    if func is None:
        raise LoadError(None, "udf.py defines no top-level function named %r; define it, "
                              "or change the handler of the function" % handler)
    options = getattr(func, "_kiln_options", None)
    if options is not None:
        func = options["func"]
    else:
        options = {}
    if not callable(func):
        raise LoadError(None, "%r in udf.py is a %s, not a function; the handler must be a "
                              "top-level function" % (handler, type(func).__name__))
    check_arity(handler, func, arity)
    not_null = result.endswith(" NOT NULL")
    if options.get("skip_null") and not_null:
        raise LoadError(None, "skip_null=True needs a nullable result, but the function returns "
                              "%s; declare the result type NULL" % result)
    if options.get("on_error") == "null" and not_null:
        raise LoadError(None, "on_error='null' needs a nullable result, but the function returns "
                              "%s; declare the result type NULL" % result)
    return Udf(handler, func, arity, path, options)


def decorated_named(module, name):
    """A databend_udf-decorated function whose name= option is the handler, as databend-udf finds it."""
    for value in list(module.__dict__.values()):
        options = getattr(value, "_kiln_options", None)
        if isinstance(options, dict) and options.get("name") == name:
            return value
    return None


def read_meta(path):
    """Reads udf.meta: "key=value" lines (PROTOCOL.md); a key may repeat, in order."""
    meta = {}
    with open(path, "rb") as f:
        for line in f.read().decode("utf-8").splitlines():
            if line:
                key, _, value = line.partition("=")
                meta.setdefault(key, []).append(value)
    if "handler" not in meta:
        raise ValueError("udf.meta names no handler")
    return meta


def check_arity(handler, func, arity):
    code = getattr(func, "__code__", None)
    if code is not None and type(func).__name__ == "function":
        # Plain functions: read the signature off the code object; inspect is slow to import.
        positional = code.co_argcount
        defaults = len(func.__defaults__ or ())
        kw_required = code.co_kwonlyargcount - len(func.__kwdefaults__ or {})
        varargs = code.co_flags & 0x04
        if kw_required == 0 and positional - defaults <= arity and (varargs or arity <= positional):
            return
    try:
        import inspect
        signature = inspect.signature(func)
    except (ValueError, TypeError):
        return  # builtins and some C callables have no signature; let the call decide
    try:
        signature.bind(*range(arity))
    except TypeError as e:
        raise LoadError(None, "the function %s%s cannot be called with the %d argument(s) of its SQL "
                              "signature (%s); make the Python parameters match the SQL arguments"
                        % (handler, signature, arity, e))


def setup_import_dir():
    """Makes the UDF's imports importable, as Databend's own runtime does (databend-wire.md §5)."""
    import_dir = os.environ.get("KILN_IMPORT_DIR")
    if not import_dir or not os.path.isdir(import_dir):
        return
    sys._xoptions["databend_import_directory"] = import_dir
    sys.path.insert(0, import_dir)
    for name in sorted(os.listdir(import_dir)):
        if name.endswith((".zip", ".whl", ".egg")):
            sys.path.insert(0, os.path.join(import_dir, name))


def limit_memory():
    """Caps the address space at $KILN_MEMORY_LIMIT bytes: allocations beyond it raise MemoryError."""
    limit = os.environ.get("KILN_MEMORY_LIMIT")
    if not limit:
        return
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


# ---------------------------------------------------------------- calling


def compute(udf, columns, rows, first_row):
    """Calls the function once per row; a failure names the row, its arguments and the udf.py line."""
    func = udf.func
    if columns:
        # extend() keeps what it appended before func raised, so len(results) is the failing row
        # (columns may be memoryviews, whose iterators have no __length_hint__).
        results = []
        try:
            results.extend(map(func, *columns))
            return results
        except MemoryError:
            raise
        except BaseException as e:
            row = len(results)
            args = [c[row] for c in columns] if 0 <= row < rows else None
            raise BatchError(calls().describe_call_error(e, udf.path, first_row + row, args))
    counter = iter(range(rows))
    try:
        return [func() for _ in counter]
    except MemoryError:
        raise
    except BaseException as e:
        row = rows - 1 - counter.__length_hint__()
        raise BatchError(calls().describe_call_error(e, udf.path, first_row + row, None))


def encode_result(results, t, first_row, udf, errors):
    """Returns the column parts for the results; with on_error="null" bad values become NULL."""
    attempts = 0
    while True:
        try:
            return encode_column(results, t)
        except Bad as b:
            calls().bad_result(b, results, t, first_row, udf, errors)
            attempts += 1
            if attempts == 16:
                calls().null_every_bad_result(results, t, first_row, errors, encode_column)


# ---------------------------------------------------------------- serving


def decode_batch(payload, lazy=False):
    """Returns (rows, first_row, result type, columns, validities) of a BATCH payload.

    With lazy, columns are sequences (see decode_column), else lists.
    """
    view = memoryview(payload)
    try:
        rows, first_row, argc = BATCH_HEAD.unpack_from(view, 0)
        rtype, pos = result_type(view, BATCH_HEAD.size)
        columns = []
        validities = []
        for _ in range(argc):
            column, validity, pos = decode_column(view, pos, rows, lazy)
            columns.append(column)
            validities.append(validity)
    except (struct.error, IndexError, TypeError, ValueError) as e:
        raise BatchError("malformed batch frame: %s: %s" % (exception_name(e), e), "input")
    if pos != len(view):
        raise BatchError("malformed batch frame: %d bytes after its last column" % (len(view) - pos),
                         "input")
    return rows, first_row, rtype, columns, validities


def handle_batch(payload, udf, keep):
    # Only plain functions take lazy columns: batch mode hands the columns to the UDF as lists.
    rows, first_row, rtype, columns, validities = decode_batch(payload, udf.plain)
    del payload
    if udf.plain:
        errors = None
        results = compute(udf, columns, rows, first_row)
    else:
        errors = calls().RowErrors(first_row) if udf.on_error_null else None
        results = calls().compute(udf, columns, validities, rows, first_row, errors)
    parts = encode_result(results, rtype, first_row, udf, errors)
    if errors is not None:
        errors.finish()
    # Holding this batch's objects until the next batch is done keeps the allocator's arenas
    # mapped: freed at once, they go back to the OS and the next batch page-faults fresh memory
    # (measured: add(BIGINT, BIGINT) 25% slower per batch).
    keep[:] = [columns, results]
    return [RESULT_HEAD.pack(rows, errors.count if errors is not None else 0)] + parts


def memory_error_detail(e, path):
    frame = last_udf_frame(e.__traceback__, path)
    if frame is None:
        return "MemoryError while Kiln's runner decoded or encoded the batch"
    return "MemoryError in %s line %d, in %s" % (udf_file_name(path), frame.lineno, frame.name)


def take_load(channel):
    """Waits for the LOAD frame of a pooled runner, writes its files and takes its environment.

    Payload: header_length:u32, a UTF-8 JSON header {"env": {name: value}, "files": [[path, size,
    mode], ...]}, then the files' bytes one after another. A file is written next to its place and
    renamed into it, so runners loading the same UDF side by side never see half a file.
    """
    import json
    frame_type, payload = channel.read_frame()
    if frame_type is None:
        return False
    if frame_type != LOAD:
        raise ValueError("a frame of type 0x%02x instead of LOAD" % frame_type)
    view = memoryview(payload)
    (header_length,) = struct.unpack_from("<I", view, 0)
    header = json.loads(bytes(view[4:4 + header_length]).decode("utf-8"))
    at = 4 + header_length
    for path, size, mode in header["files"]:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = "%s.%d.tmp" % (path, os.getpid())
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            chunk = view[at:at + size]
            while chunk:
                chunk = chunk[os.write(fd, chunk):]
        finally:
            os.close(fd)
        os.replace(temp, path)
        at += size
    os.environ.update(header["env"])
    return True


def preload():
    """Imports the modules named in $KILN_PRELOAD (comma-separated), for a pooled runner whose
    sandbox holds a lock's packages (a zygote): the UDF that takes it finds them imported. One
    that fails to import is skipped, with a line on stderr; the UDF's own import then says why.
    """
    names = os.environ.pop("KILN_PRELOAD", "")
    if not names:
        return
    import importlib
    for name in names.split(","):
        try:
            importlib.import_module(name)
        except BaseException as e:  # SystemExit from a module too: the runner must live on
            sys.stderr.write("kiln_runner: preloading %s failed: %s: %s\n"
                             % (name, exception_name(e), e))


def serve(pooled=False):
    # The protocol keeps private copies of fds 0 and 1. The UDF's stdin becomes /dev/null and
    # its stdout goes to stderr, so nothing the UDF reads or prints can touch the data stream.
    proto_in = os.dup(0)
    proto_out = os.dup(1)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    os.dup2(2, 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass
    # A crash in native code (os.abort, a segfault in an extension) then still leaves a
    # Python stack in the output the worker shows to the user.
    faulthandler.enable(file=sys.stderr)
    enlarge_pipes(proto_in, proto_out)
    channel = Channel(proto_in, proto_out)

    if pooled:
        # Warm and waiting: everything above is done, and what reading the LOAD needs is imported
        # (json costs tens of ms under gVisor); nothing of any UDF is here yet.
        import json  # noqa: F401 (take_load's)
        preload()
        channel.write_frame(WAITING, b"")
        try:
            if not take_load(channel):
                return 0
        except Exception as e:
            channel.write_json(LOAD_ERROR, {"type": exception_name(e), "message": str(e),
                                            "line": None, "text": None, "file": "LOAD"})
            return 1
    udf_dir = os.environ.get("KILN_UDF_DIR", "/kiln/udf")
    try:
        check_platform()
        limit_memory()
        setup_import_dir()
        udf = load_udf(udf_dir)
    except LoadError as e:
        channel.write_json(LOAD_ERROR, {"type": e.type_name, "message": e.message,
                                        "line": e.line, "text": e.text, "file": "udf.py"})
        return 1
    except Exception as e:  # udf.meta missing or unreadable: the image is broken
        channel.write_json(LOAD_ERROR, {"type": exception_name(e), "message": str(e),
                                        "line": None, "text": None, "file": "udf.meta"})
        return 1
    if udf.declared is None:
        # Written by hand: every value is a number or an identifier, and json is slow to import.
        channel.write_frame(READY, ('{"protocol": %d, "handler": "%s", "pid": %d, "python": "%d.%d.%d"}'
                                    % ((RUNNER_PROTOCOL, udf.handler, os.getpid())
                                       + tuple(sys.version_info[:3]))).encode("ascii"))
    else:
        channel.write_json(READY, {"protocol": RUNNER_PROTOCOL, "handler": udf.handler,
                                   "pid": os.getpid(), "python": "%d.%d.%d" % sys.version_info[:3],
                                   "declared": udf.declared})
    keep = []

    while True:
        frame_type, payload = channel.read_frame()
        if frame_type is None:
            return 0
        if frame_type != BATCH:
            sys.stderr.write("kiln_runner: unexpected frame type 0x%02x; stopping\n" % frame_type)
            return 2
        try:
            parts = handle_batch(payload, udf, keep)
        except BatchError as e:
            sync_output()
            channel.write_json(BATCH_ERROR, {"message": e.message, "kind": e.kind})
            continue
        except MemoryError as e:
            keep[:] = []
            detail = memory_error_detail(e, udf.path)
            e = None
            sync_output()
            channel.write_json(BATCH_ERROR, {"message": detail, "kind": "memory"})
            continue
        except Exception as e:  # a bug in this runner; report it rather than die
            import traceback
            traceback.print_exc()
            sync_output()
            channel.write_json(BATCH_ERROR, {"message": "the Kiln runner failed: %s: %s"
                                             % (exception_name(e), e), "kind": "internal"})
            continue
        finally:
            payload = None
        channel.write_frame(RESULT, *parts)


def enlarge_pipes(*fds):
    """Asks for 1 MiB pipes: a batch then crosses in a few writes instead of many 64 KiB ones."""
    try:
        import fcntl
    except ImportError:
        return
    set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # the constant is new in Python 3.10
    for fd in fds:
        try:
            fcntl.fcntl(fd, set_size, 1 << 20)
        except OSError:
            pass  # not a pipe, or above the system's limit: the default size works, only slower


def check_platform():
    if sys.byteorder != "little":
        raise LoadError(None, "the runner needs a little-endian machine")
    for ctype, fmt in FIXED.items():
        if array.array(fmt).itemsize != WIDTHS[ctype]:
            raise LoadError(None, "this Python's array type %r is %d bytes, not %d"
                            % (fmt, array.array(fmt).itemsize, WIDTHS[ctype]))
