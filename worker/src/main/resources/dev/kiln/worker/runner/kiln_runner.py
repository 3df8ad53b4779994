"""Kiln's in-sandbox UDF runner.

Runs one Python UDF for the Kiln worker, speaking the columnar frame protocol
described in PROTOCOL.md over stdin/stdout. Standard library only (no pyarrow),
Python 3.8 or newer.

    python3 kiln_runner.py init    # prints "ready", then waits for stdin to close
    python3 kiln_runner.py serve   # loads $KILN_UDF_DIR/udf.py and serves batches

Speed matters more than elegance here: columns are decoded and encoded whole
(memoryview.cast, array, bytes.join) and the function is called through map(),
so the per-row cost is the UDF's own call and little else.
"""

# Only cheap modules at the top: under gVisor every import costs file-system round trips, and
# both init mode and a runner's start are on the cold-start path. Modules needed only on error
# paths (json, traceback, reprlib, inspect) are imported where they are used.
import faulthandler
import io
import itertools
import os
import struct
import sys

array = None  # imported by serve(): it pulls in collections.abc, which init does not need

RUNNER_PROTOCOL = 1

# Frame types (PROTOCOL.md, "Frames").
READY = 0x01
LOAD_ERROR = 0x02
BATCH = 0x10
RESULT = 0x11
BATCH_ERROR = 0x12

# Column type codes (PROTOCOL.md, "Type codes").
BOOLEAN = 1
INT8 = 2
INT16 = 3
INT32 = 4
INT64 = 5
UINT8 = 6
UINT16 = 7
UINT32 = 8
UINT64 = 9
FLOAT32 = 10
FLOAT64 = 11
STRING = 12
BINARY = 13
DATE = 14
TIMESTAMP = 15

TYPE_NAMES = {
    BOOLEAN: "BOOLEAN", INT8: "INT8", INT16: "INT16", INT32: "INT32", INT64: "INT64",
    UINT8: "UINT8", UINT16: "UINT16", UINT32: "UINT32", UINT64: "UINT64",
    FLOAT32: "FLOAT32", FLOAT64: "FLOAT64", STRING: "STRING", BINARY: "BINARY",
    DATE: "DATE", TIMESTAMP: "TIMESTAMP",
}

# array / memoryview format of each fixed-width type; sizes are checked at start.
FIXED = {
    INT8: "b", INT16: "h", INT32: "i", INT64: "q",
    UINT8: "B", UINT16: "H", UINT32: "I", UINT64: "Q",
    FLOAT32: "f", FLOAT64: "d",
}
WIDTHS = {INT8: 1, INT16: 2, INT32: 4, INT64: 8, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8,
          FLOAT32: 4, FLOAT64: 8}
PYTHON_TYPE = {BOOLEAN: "bool", STRING: "str", BINARY: "bytes", FLOAT32: "float", FLOAT64: "float"}

HAS_NULLS = 0x01        # column flags
RESULT_NULLABLE = 0x01  # BATCH result flags

FRAME_HEAD = struct.Struct("<IB")
BATCH_HEAD = struct.Struct("<IHBB")
RESULT_HEAD = struct.Struct("<IBB")
BOOLS = (False, True)

_REPR = []


def short_repr(value):
    """A bounded repr for error messages."""
    if not _REPR:
        import reprlib
        r = reprlib.Repr()
        r.maxstring = 60
        r.maxother = 60
        r.maxlist = 8
        r.maxtuple = 8
        _REPR.append(r)
    return _REPR[0].repr(value)


class LoadError(Exception):
    """The UDF code could not be loaded; carries what the user needs to fix it."""

    def __init__(self, type_name, message, line=None, text=None):
        Exception.__init__(self, message)
        self.type_name = type_name
        self.message = message
        self.line = line
        self.text = text


class BatchError(Exception):
    """A batch failed; kind is "user" (the UDF or its result) or "input" (bad data)."""

    def __init__(self, message, kind="user"):
        Exception.__init__(self, message)
        self.message = message
        self.kind = kind


# ---------------------------------------------------------------- I/O


class Channel:
    """Frames over two file descriptors: the protocol's private copies of stdin/stdout."""

    def __init__(self, read_fd, write_fd):
        self.reader = io.FileIO(read_fd, "rb", closefd=False)
        self.write_fd = write_fd

    def _read_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.reader.readinto(view[got:])
            if not k:
                return None if got == 0 else _truncated(got, n)
            got += k
        return buf

    def read_frame(self):
        head = self._read_exact(FRAME_HEAD.size)
        if head is None:
            return None, None
        length, frame_type = FRAME_HEAD.unpack(head)
        payload = self._read_exact(length) if length else bytearray()
        if payload is None:
            _truncated(0, length)
        return frame_type, payload

    def write_frame(self, frame_type, *parts):
        length = sum(memoryview(p).nbytes for p in parts)
        data = memoryview(b"".join((FRAME_HEAD.pack(length, frame_type),) + parts))
        while data:
            data = data[os.write(self.write_fd, data):]

    def write_json(self, frame_type, obj):
        import json
        self.write_frame(frame_type, json.dumps(obj).encode("utf-8"))


def _truncated(got, n):
    raise EOFError("the worker closed the stream in the middle of a frame (%d of %d bytes)" % (got, n))


# ---------------------------------------------------------------- loading


def udf_file_name(path):
    return os.path.basename(path)


def load_udf(udf_dir):
    """Executes udf.py as module "udf" and returns (handler name, handler, arity)."""
    meta = read_meta(os.path.join(udf_dir, "udf.meta"))
    handler = meta["handler"][0]
    arity = len(meta.get("input_type", []))
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
        raise LoadError(None, "udf.py defines no top-level function named %r; define it, "
                              "or change the handler of the function" % handler)
    if not callable(func):
        raise LoadError(None, "%r in udf.py is a %s, not a function; the handler must be a "
                              "top-level function" % (handler, type(func).__name__))
    check_arity(handler, func, arity)
    return handler, func, arity


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


# ---------------------------------------------------------------- errors


def exception_name(e):
    t = type(e)
    module = getattr(t, "__module__", None)
    if module in (None, "builtins", "__main__"):
        return t.__qualname__
    return "%s.%s" % (module, t.__qualname__)


def exception_text(e):
    try:
        return str(e)
    except Exception:  # a broken __str__ must not hide the original error
        return "<%s: str() failed>" % exception_name(e)


def last_udf_frame(tb, path):
    import traceback
    frames = [f for f in traceback.extract_tb(tb) if f.filename == path]
    return frames[-1] if frames else None


def describe_call_error(e, path, row, args):
    text = exception_name(e)
    message = exception_text(e)
    if message:
        text += ": " + message
    frame = last_udf_frame(e.__traceback__, path)
    if frame is not None:
        where = "%s line %d, in %s" % (udf_file_name(path), frame.lineno, frame.name)
        if frame.line:
            where += ": " + frame.line.strip()
        text += " (" + where + ")"
    text += " [row %d of the batch" % row
    if args is not None:
        text += ", arguments %s" % short_repr(tuple(args))
    return text + "]"


# ---------------------------------------------------------------- decoding


def decode_column(view, pos, rows):
    """Decodes one column at view[pos:]; returns (list of Python values, next position)."""
    ctype = view[pos]
    flags = view[pos + 1]
    pos += 2
    validity = None
    if flags & HAS_NULLS:
        validity = view[pos:pos + rows].tobytes()
        pos += rows
    fmt = FIXED.get(ctype)
    if fmt is not None:
        end = pos + rows * WIDTHS[ctype]
        values = view[pos:end].cast(fmt).tolist()
        pos = end
    elif ctype == BOOLEAN:
        values = list(map(BOOLS.__getitem__, view[pos:pos + rows]))
        pos += rows
    elif ctype == STRING or ctype == BINARY:
        end = pos + (rows + 1) * 8
        offsets = view[pos:end].cast("q").tolist()
        pos = end
        total = offsets[rows] if rows else 0
        data = view[pos:pos + total].tobytes()
        pos += total
        slices = map(slice, offsets[:-1], offsets[1:])
        if ctype == BINARY:
            values = list(map(data.__getitem__, slices))
        elif data.isascii():
            # ASCII: byte offsets are character offsets, so slice one decoded str.
            text = data.decode("ascii")
            values = list(map(text.__getitem__, slices))
        else:
            try:
                values = list(map(bytes.decode, map(data.__getitem__, slices)))
            except UnicodeDecodeError as e:
                raise BatchError("a STRING argument is not valid UTF-8: %s" % e, "input")
    elif ctype in TYPE_NAMES:
        raise BatchError("arguments of type %s are not supported yet by this runner"
                         % TYPE_NAMES[ctype], "input")
    else:
        raise BatchError("unknown column type code %d" % ctype, "input")
    if validity is not None:
        set_nulls(values, validity)
    return values, pos


def set_nulls(values, validity):
    nulls = validity.count(0)
    if not nulls:
        return
    if nulls * 8 < len(validity):
        i = validity.find(0)
        while i >= 0:
            values[i] = None
            i = validity.find(0, i + 1)
    else:
        values[:] = [v if ok else None for v, ok in zip(values, validity)]


# ---------------------------------------------------------------- calling


def apply(func, columns, rows, path):
    """Calls func once per row; a failure names the row, its arguments and the udf.py line."""
    if columns:
        iterators = [iter(c) for c in columns]
        try:
            return list(map(func, *iterators))
        except BaseException as e:
            # map() has taken row+1 items from every iterator when func raised on row.
            row = rows - 1 - iterators[0].__length_hint__()
            args = [c[row] for c in columns] if 0 <= row < rows else None
            raise BatchError(describe_call_error(e, path, row, args))
    counter = iter(range(rows))
    try:
        return [func() for _ in counter]
    except BaseException as e:
        row = rows - 1 - counter.__length_hint__()
        raise BatchError(describe_call_error(e, path, row, None))


# ---------------------------------------------------------------- encoding


def type_label(rtype, nullable):
    return "%s %s" % (TYPE_NAMES[rtype], "NULL" if nullable else "NOT NULL")


def expected_python(rtype):
    return PYTHON_TYPE.get(rtype, "int")


def none_error(row, rtype):
    return BatchError("the function returned None for row %d, but the result type is %s; return a "
                      "value, or declare the result type NULL" % (row, type_label(rtype, False)))


def value_error(row, value, rtype, nullable, detail=None):
    text = "the function returned %s %s for row %d, but the result type is %s (expected %s)" % (
        type(value).__name__, short_repr(value), row, type_label(rtype, nullable),
        expected_python(rtype))
    if detail:
        text += ": " + detail
    return BatchError(text)


def encode_fixed(results, rtype, nullable):
    fmt = FIXED[rtype]
    try:
        return None, array.array(fmt, results)
    except (TypeError, OverflowError):
        pass
    # Slow path: NULLs, or a bad value that must be found and named.
    values = array.array(fmt, bytes(len(results) * WIDTHS[rtype]))
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            if not nullable:
                raise none_error(i, rtype)
            continue
        if isinstance(v, (str, bytes)) or (fmt in "bhiqBHIQ" and isinstance(v, float)):
            raise value_error(i, v, rtype, nullable)
        try:
            values[i] = v
        except OverflowError:
            raise value_error(i, v, rtype, nullable, "out of range for %s" % TYPE_NAMES[rtype])
        except TypeError:
            raise value_error(i, v, rtype, nullable)
        validity[i] = 1
    return (validity if 0 in validity else None), values


def encode_bool(results, rtype, nullable):
    if set(map(type, results)) <= {bool}:
        return None, bytes(results)
    values = bytearray(len(results))
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            if not nullable:
                raise none_error(i, rtype)
            continue
        if type(v) is not bool and type(v).__name__ != "bool_":  # numpy.bool_ is fine
            raise value_error(i, v, rtype, nullable)
        values[i] = 1 if v else 0
        validity[i] = 1
    return (validity if 0 in validity else None), values


def encode_varwidth(results, rtype, nullable):
    validity = None
    if rtype == STRING:
        try:
            encoded = list(map(str.encode, results))
        except (TypeError, UnicodeEncodeError):
            validity, encoded = encode_varwidth_slow(results, rtype, nullable)
    elif set(map(type, results)) <= {bytes}:
        encoded = results
    else:
        validity, encoded = encode_varwidth_slow(results, rtype, nullable)
    offsets = array.array("q", itertools.accumulate(map(len, encoded), initial=0))
    return validity, (offsets, b"".join(encoded))


def encode_varwidth_slow(results, rtype, nullable):
    encoded = [b""] * len(results)
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            if not nullable:
                raise none_error(i, rtype)
            continue
        if rtype == STRING:
            if not isinstance(v, str):
                raise value_error(i, v, rtype, nullable)
            try:
                encoded[i] = v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise value_error(i, v, rtype, nullable, "it cannot be encoded as UTF-8 (%s)" % e.reason)
        else:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise value_error(i, v, rtype, nullable)
            encoded[i] = bytes(v)
        validity[i] = 1
    return (validity if 0 in validity else None), encoded


def encode_result(results, rtype, nullable, rows):
    """Returns the RESULT payload parts for the function's results."""
    if rtype in FIXED:
        validity, values = encode_fixed(results, rtype, nullable)
        parts = [values]
    elif rtype == BOOLEAN:
        validity, values = encode_bool(results, rtype, nullable)
        parts = [values]
    elif rtype == STRING or rtype == BINARY:
        validity, (offsets, data) = encode_varwidth(results, rtype, nullable)
        parts = [offsets, data]
    elif rtype in TYPE_NAMES:
        raise BatchError("results of type %s are not supported yet by this runner"
                         % TYPE_NAMES[rtype], "input")
    else:
        raise BatchError("unknown result type code %d" % rtype, "input")
    head = RESULT_HEAD.pack(rows, rtype, HAS_NULLS if validity is not None else 0)
    return [head] + ([validity] if validity is not None else []) + parts


# ---------------------------------------------------------------- serving


def decode_batch(payload):
    """Returns (rows, result type, result nullable, columns) of a BATCH payload."""
    view = memoryview(payload)
    try:
        rows, argc, rtype, rflags = BATCH_HEAD.unpack_from(view, 0)
        pos = BATCH_HEAD.size
        columns = []
        for _ in range(argc):
            column, pos = decode_column(view, pos, rows)
            columns.append(column)
    except (struct.error, IndexError, TypeError, ValueError) as e:
        raise BatchError("malformed batch frame: %s: %s" % (exception_name(e), e), "input")
    if pos != len(view):
        raise BatchError("malformed batch frame: %d bytes after its last column" % (len(view) - pos),
                         "input")
    return rows, rtype, bool(rflags & RESULT_NULLABLE), columns


def handle_batch(payload, func, path, keep):
    rows, rtype, nullable, columns = decode_batch(payload)
    del payload
    results = apply(func, columns, rows, path)
    parts = encode_result(results, rtype, nullable, rows)
    # Holding this batch's objects until the next batch is done keeps the allocator's arenas
    # mapped: freed at once, they go back to the OS and the next batch page-faults fresh memory
    # (measured: add(BIGINT, BIGINT) 25% slower per batch).
    keep[:] = [columns, results]
    return parts


def serve():
    global array
    import array
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

    udf_dir = os.environ.get("KILN_UDF_DIR", "/kiln/udf")
    path = os.path.join(udf_dir, "udf.py")
    try:
        check_platform()
        setup_import_dir()
        handler, func, _ = load_udf(udf_dir)
    except LoadError as e:
        channel.write_json(LOAD_ERROR, {"type": e.type_name, "message": e.message,
                                        "line": e.line, "text": e.text, "file": "udf.py"})
        return 1
    except Exception as e:  # udf.meta missing or unreadable: the image is broken
        channel.write_json(LOAD_ERROR, {"type": exception_name(e), "message": str(e),
                                        "line": None, "text": None, "file": "udf.meta"})
        return 1
    # Written by hand: every value is a number or an identifier, and json is slow to import.
    channel.write_frame(READY, ('{"protocol": %d, "handler": "%s", "pid": %d, "python": "%d.%d.%d"}'
                                % ((RUNNER_PROTOCOL, handler, os.getpid()) + tuple(sys.version_info[:3]))
                                ).encode("ascii"))
    keep = []

    while True:
        frame_type, payload = channel.read_frame()
        if frame_type is None:
            return 0
        if frame_type != BATCH:
            sys.stderr.write("kiln_runner: unexpected frame type 0x%02x; stopping\n" % frame_type)
            return 2
        try:
            parts = handle_batch(payload, func, path, keep)
        except BatchError as e:
            channel.write_json(BATCH_ERROR, {"message": e.message, "kind": e.kind})
            continue
        except Exception as e:  # a bug in this runner; report it rather than die
            import traceback
            traceback.print_exc()
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


def init():
    # Readiness signal for the provisioner; then keep the sandbox alive until stdin closes.
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while sys.stdin.buffer.read(65536):
        pass
    return 0


def main(argv):
    mode = argv[1] if len(argv) > 1 else ""
    if mode == "init":
        return init()
    if mode == "serve":
        return serve()
    sys.stderr.write("usage: kiln_runner.py init|serve\n")
    return 64


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (BrokenPipeError, EOFError) as e:
        # The worker went away; nothing is left to answer.
        sys.stderr.write("kiln_runner: %s\n" % (e or "the worker closed the connection"))
        sys.exit(3)
