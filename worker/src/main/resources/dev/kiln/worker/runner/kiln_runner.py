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
# both init mode and a runner's start are on the cold-start path. Modules needed only for some
# types, options or error paths (json, reprlib, traceback, inspect, resource, and kiln_types.py
# with datetime, decimal and the rest) are imported where they are used. This file is compiled at
# every start (a sandbox caches no bytecode), so what most UDFs never run lives in kiln_types.py.
import faulthandler
import io
import itertools
import os
import struct
import sys

array = None  # imported by serve(): it pulls in collections.abc, which init does not need

RUNNER_PROTOCOL = 2

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
DECIMAL = 16
VARIANT = 17
ARRAY = 18
MAP = 19
TUPLE = 20
VECTOR = 21

TYPE_NAMES = {
    BOOLEAN: "BOOLEAN", INT8: "INT8", INT16: "INT16", INT32: "INT32", INT64: "INT64",
    UINT8: "UINT8", UINT16: "UINT16", UINT32: "UINT32", UINT64: "UINT64",
    FLOAT32: "FLOAT32", FLOAT64: "FLOAT64", STRING: "STRING", BINARY: "BINARY",
    DATE: "DATE", TIMESTAMP: "TIMESTAMP", DECIMAL: "DECIMAL", VARIANT: "VARIANT",
    ARRAY: "ARRAY", MAP: "MAP", TUPLE: "TUPLE", VECTOR: "VECTOR",
}

# array / memoryview format of each fixed-width type; sizes are checked at start.
FIXED = {
    INT8: "b", INT16: "h", INT32: "i", INT64: "q",
    UINT8: "B", UINT16: "H", UINT32: "I", UINT64: "Q",
    FLOAT32: "f", FLOAT64: "d",
}
WIDTHS = {INT8: 1, INT16: 2, INT32: 4, INT64: 8, UINT8: 1, UINT16: 2, UINT32: 4, UINT64: 8,
          FLOAT32: 4, FLOAT64: 8}

HAS_NULLS = 0x01  # column flags
SEPARATED = 0x02  # STRING, BINARY, VARIANT: sep:u8 length:u64 values joined by sep
SEP = "\x00"     # the separator results are joined with when no value contains it

FRAME_HEAD = struct.Struct("<IB")
BATCH_HEAD = struct.Struct("<IIH")   # rows, first_row, argc
RESULT_HEAD = struct.Struct("<II")   # rows, row_errors
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
BOOLS = (False, True)

# The worker waits for this line on stderr before it quotes the UDF's output in an error.
OUTPUT_SYNC = b"\x1fkiln-sync\n"

# Days from 0001-01-01 (ordinal 1) to 1970-01-01.
EPOCH_ORDINAL = 719163
# Rows whose errors are written to stderr per batch when on_error="null".
LOGGED_ROW_ERRORS = 3

# Codes whose result descriptor is more than (code, nullable).
PARAMETERISED = (DECIMAL, ARRAY, MAP, TUPLE, VECTOR)

_REPR = []
_LAZY = {}


def short_repr(value):
    """A bounded repr for error messages."""
    if not _REPR:
        import reprlib
        r = reprlib.Repr()
        r.maxstring = 60
        r.maxother = 60
        r.maxlist = 8
        r.maxtuple = 8
        r.maxdict = 8
        _REPR.append(r)
    return _REPR[0].repr(value)


def lazy(name):
    """Imports a module on first use (most UDFs never need it)."""
    module = _LAZY.get(name)
    if module is None:
        module = _LAZY[name] = __import__(name)
    return module


def types():
    """kiln_types.py: DATE, TIMESTAMP, DECIMAL, VARIANT results, nested types, decorator options."""
    module = _LAZY.get("kiln_types")
    if module is None:
        # From the runner's own directory, whatever the UDF's imports put first on sys.path.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        try:
            import kiln_types as module
        finally:
            del sys.path[0]
        _LAZY["kiln_types"] = module
    return module


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


class Bad(Exception):
    """A result value the result type cannot hold: its index, and where inside it the problem is."""

    def __init__(self, index, value, t, extra=None, path=""):
        Exception.__init__(self, index)
        self.index = index
        self.value = value
        self.t = t
        self.extra = extra
        self.path = path


# ---------------------------------------------------------------- types


class T:
    """A type as the BATCH frame describes it (PROTOCOL.md, "Type descriptors")."""

    __slots__ = ("code", "nullable", "precision", "scale", "children", "dim")

    def __init__(self, code, nullable, precision=0, scale=0, children=(), dim=0):
        self.code = code
        self.nullable = nullable
        self.precision = precision
        self.scale = scale
        self.children = children
        self.dim = dim

_TYPE_CACHE = {}


def result_type(view, pos):
    """The result descriptor of a BATCH; a plain type costs a dict lookup."""
    code = view[pos]
    if code in PARAMETERISED:
        return types().result_type(view, pos)
    key = (code, view[pos + 1])
    t = _TYPE_CACHE.get(key)
    if t is None:
        if code not in TYPE_NAMES:
            raise BatchError("unknown result type code %d" % code, "input")
        t = _TYPE_CACHE[key] = T(code, bool(view[pos + 1]))
    return t, pos + 2


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
        # Small parts are joined into one write; a large one (a column body) is written from where
        # it is rather than copied into a joined frame first. (os.writev measured slower under
        # gVisor.)
        small = [FRAME_HEAD.pack(length, frame_type)]
        for p in parts:
            if memoryview(p).nbytes < 65536:
                small.append(p)
                continue
            self._write(b"".join(small))
            small = []
            self._write(p)
        if small:
            self._write(b"".join(small))

    def _write(self, data):
        data = memoryview(data).cast("B")
        while data:
            data = data[os.write(self.write_fd, data):]

    def write_json(self, frame_type, obj):
        self.write_frame(frame_type, lazy("json").dumps(obj).encode("utf-8"))


def _truncated(got, n):
    raise EOFError("the worker closed the stream in the middle of a frame (%d of %d bytes)" % (got, n))


def sync_output():
    """Flushes the UDF's output and marks its end, so an error can quote all of it."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        os.write(2, OUTPUT_SYNC)
    except OSError:
        pass


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



def udf_file_name(path):
    return os.path.basename(path)


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


# ---------------------------------------------------------------- decoding


def decode_column(view, pos, rows, lazy=False):
    """Decodes one column at view[pos:]; returns (values, validity bytes or None, next position).

    With lazy, a fixed-width column without NULLs stays a typed memoryview over the payload: map()
    then makes each int or float as the function takes it, and drops it right after, instead of
    building a list of them all first (measured: add(BIGINT, BIGINT) 15-25% faster per runner).
    """
    ctype = view[pos]
    flags = view[pos + 1]
    pos += 2
    params = None
    if ctype == DECIMAL:
        params = (view[pos], view[pos + 1], view[pos + 2])
        pos += 3
    elif ctype == TUPLE:
        params = U16.unpack_from(view, pos)[0]
        pos += 2
    elif ctype == VECTOR:
        params = U32.unpack_from(view, pos)[0]
        pos += 4
    validity = None
    if flags & HAS_NULLS:
        validity = view[pos:pos + rows].tobytes()
        pos += rows
    fmt = FIXED.get(ctype)
    if fmt is not None:
        end = pos + rows * WIDTHS[ctype]
        values = view[pos:end].cast(fmt)
        if validity is not None or not lazy:
            values = values.tolist()
        pos = end
    elif ctype == BOOLEAN:
        values = list(map(BOOLS.__getitem__, view[pos:pos + rows]))
        pos += rows
    elif ctype == STRING or ctype == BINARY or ctype == VARIANT:
        if flags & SEPARATED:
            values, pos = decode_separated(view, pos, rows, ctype, validity)
        else:
            values, pos = decode_varwidth(view, pos, rows, ctype, validity)
    else:
        values, pos = types().decode_other(view, pos, rows, ctype, params, validity)
    if validity is not None:
        set_nulls(values, validity)
    return values, validity, pos


def decode_separated(view, pos, rows, ctype, validity):
    """Values joined by a separator byte none of them contains: one C-level split."""
    sep = view[pos]
    length = struct.unpack_from("<Q", view, pos + 1)[0]
    pos += 9
    if ctype == BINARY:
        data = view[pos:pos + length].tobytes()
        pos += length
        values = data.split(bytes((sep,))) if rows else []
    else:
        data = view[pos:pos + length]
        pos += length
        try:
            text = str(data, "utf-8")  # straight from the payload; ASCII takes a fast path
        except UnicodeDecodeError as e:
            raise BatchError("a STRING argument is not valid UTF-8: %s" % e, "input")
        values = text.split(chr(sep)) if rows else []
        if ctype == VARIANT:
            loads = lazy("json").loads
            try:
                if validity is None:
                    values = list(map(loads, values))
                else:
                    values = [loads(b) if ok else None for b, ok in zip(values, validity)]
            except ValueError as e:
                raise BatchError("a VARIANT argument is not valid JSON: %s" % e, "input")
    if len(values) != rows:
        raise BatchError("malformed batch frame: %d separated values for %d rows"
                         % (len(values), rows), "input")
    return values, pos


def decode_varwidth(view, pos, rows, ctype, validity):
    end = pos + (rows + 1) * 8
    offsets = view[pos:end].cast("q").tolist()
    pos = end
    total = offsets[rows] if rows else 0
    data = view[pos:pos + total].tobytes()
    pos += total
    slices = map(slice, offsets[:-1], offsets[1:])
    if ctype == BINARY:
        return list(map(data.__getitem__, slices)), pos
    if ctype == VARIANT:
        raw = list(map(data.__getitem__, slices))
        loads = lazy("json").loads
        try:
            if validity is None:
                return list(map(loads, raw)), pos
            return [loads(b) if ok else None for b, ok in zip(raw, validity)], pos
        except ValueError as e:
            raise BatchError("a VARIANT argument is not valid JSON: %s" % e, "input")
    if data.isascii():
        # ASCII: byte offsets are character offsets, so slice one decoded str.
        text = data.decode("ascii")
        return list(map(text.__getitem__, slices)), pos
    try:
        return list(map(bytes.decode, map(data.__getitem__, slices))), pos
    except UnicodeDecodeError as e:
        raise BatchError("a STRING argument is not valid UTF-8: %s" % e, "input")


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
            raise BatchError(types().describe_call_error(e, udf.path, first_row + row, args))
    counter = iter(range(rows))
    try:
        return [func() for _ in counter]
    except MemoryError:
        raise
    except BaseException as e:
        row = rows - 1 - counter.__length_hint__()
        raise BatchError(types().describe_call_error(e, udf.path, first_row + row, None))


# ---------------------------------------------------------------- encoding


def encode_column(values, t):
    """Returns the parts of a wire column holding values of type t; raises Bad for a bad value."""
    code = t.code
    fmt = FIXED.get(code)
    if fmt is not None:
        validity, body = encode_fixed(values, t, fmt)
        parts = [body]
    elif code == STRING or code == BINARY:
        parts = encode_separated(values, t)
        if parts is not None:
            return [bytes((code, SEPARATED))] + parts
        validity, (offsets, data) = encode_varwidth(values, t)
        parts = [offsets, data]
    elif code == BOOLEAN:
        validity, body = encode_bool(values, t)
        parts = [body]
    else:
        return types().encode_other(values, t)
    head = bytes((code, HAS_NULLS if validity is not None else 0))
    return [head] + ([validity] if validity is not None else []) + parts


def check_none(values, t, i):
    """Called for a None at index i: fine when t is nullable, else a Bad value."""
    if not t.nullable:
        raise Bad(i, None, t)


def encode_fixed(results, t, fmt):
    try:
        return None, array.array(fmt, results)
    except (TypeError, OverflowError):
        pass
    # Slow path: NULLs, or a bad value that must be found and named.
    values = array.array(fmt, bytes(len(results) * WIDTHS[t.code]))
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            continue
        if isinstance(v, (str, bytes)) or (fmt in "bhiqBHIQ" and isinstance(v, float)):
            raise Bad(i, v, t)
        try:
            values[i] = v
        except OverflowError:
            raise Bad(i, v, t, "out of range for %s" % TYPE_NAMES[t.code])
        except TypeError:
            raise Bad(i, v, t)
        validity[i] = 1
    return (validity if 0 in validity else None), values


def encode_bool(results, t):
    if set(map(type, results)) <= {bool}:
        return None, bytes(results)
    values = bytearray(len(results))
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            continue
        if type(v) is not bool and type(v).__name__ != "bool_":  # numpy.bool_ is fine
            raise Bad(i, v, t)
        values[i] = 1 if v else 0
        validity[i] = 1
    return (validity if 0 in validity else None), values


def offsets_of(encoded):
    return array.array("q", itertools.accumulate(map(len, encoded), initial=0))


def encode_separated(results, t):
    """Joined by SEP when every value is a str (bytes) without it: (None, parts) or None."""
    n = len(results)
    try:
        if t.code == STRING:
            joined = SEP.join(results)
            if joined.count(SEP) != n - 1 and n:
                return None
            data = joined.encode("utf-8")
        else:
            joined = b"\x00".join(results)
            if joined.count(0) != n - 1 and n:
                return None
            data = joined
    except (TypeError, UnicodeEncodeError):
        return None  # NULLs, other types or unencodable text: the slow path finds and names them
    return [struct.pack("<BQ", 0, len(data)), data]


def encode_varwidth(results, t):
    validity = None
    if t.code == STRING:
        try:
            encoded = list(map(str.encode, results))
        except (TypeError, UnicodeEncodeError):
            validity, encoded = encode_varwidth_slow(results, t)
    elif set(map(type, results)) <= {bytes}:
        encoded = results
    else:
        validity, encoded = encode_varwidth_slow(results, t)
    return validity, (offsets_of(encoded), b"".join(encoded))


def encode_varwidth_slow(results, t):
    encoded = [b""] * len(results)
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            continue
        if t.code == STRING:
            if not isinstance(v, str):
                raise Bad(i, v, t)
            try:
                encoded[i] = v.encode("utf-8")
            except UnicodeEncodeError as e:
                raise Bad(i, v, t, "it cannot be encoded as UTF-8 (%s)" % e.reason)
        else:
            if not isinstance(v, (bytes, bytearray, memoryview)):
                raise Bad(i, v, t)
            encoded[i] = bytes(v)
        validity[i] = 1
    return (validity if 0 in validity else None), encoded


def encode_result(results, t, first_row, udf, errors):
    """Returns the column parts for the results; with on_error="null" bad values become NULL."""
    attempts = 0
    while True:
        try:
            return encode_column(results, t)
        except Bad as b:
            types().bad_result(b, results, t, first_row, udf, errors)
            attempts += 1
            if attempts == 16:
                types().null_every_bad_result(results, t, first_row, errors)


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
        errors = types().RowErrors(first_row) if udf.on_error_null else None
        results = types().compute(udf, columns, validities, rows, first_row, errors)
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
    # kiln_types imports this script as kiln_runner: hand it the running one, not a second copy.
    sys.modules.setdefault("kiln_runner", sys.modules[__name__])
    try:
        sys.exit(main(sys.argv))
    except (BrokenPipeError, EOFError) as e:
        # The worker went away; nothing is left to answer.
        sys.stderr.write("kiln_runner: %s\n" % (e or "the worker closed the stream"))
        sys.exit(3)
