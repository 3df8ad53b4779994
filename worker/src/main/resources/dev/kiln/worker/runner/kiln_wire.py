"""Kiln's runner, the wire: frame I/O, the type codes, type descriptors and the errors a batch reports.

The lowest of the runner's modules (PROTOCOL.md): it imports none of the others, and the others
import it. Standard library only, and only cheap modules, since the serve loop imports it at
start (under gVisor every import costs file-system round trips, and a sandbox caches no bytecode).
"""

import array
import io
import itertools
import os
import struct
import sys

RUNNER_PROTOCOL = 2

# ---------------------------------------------------------------- frame types

# PROTOCOL.md, "Frames"; the Java side's are in dev.kiln.worker.FrameIO.
READY = 0x01
LOAD_ERROR = 0x02
WAITING = 0x03
LOAD = 0x04
BATCH = 0x10
RESULT = 0x11
BATCH_ERROR = 0x12

# ---------------------------------------------------------------- type codes

# The column type codes (PROTOCOL.md, "Types and Python values"): the one table on the Python side.
# The Java side's is dev.kiln.worker.TypeCode; TypeCodeTest checks that the two agree.
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

# ---------------------------------------------------------------- columns

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

# Codes whose type descriptor is more than (code, nullable).
PARAMETERISED = (DECIMAL, ARRAY, MAP, TUPLE, VECTOR)

FRAME_HEAD = struct.Struct("<IB")
BATCH_HEAD = struct.Struct("<IIH")   # rows, first_row, argc
RESULT_HEAD = struct.Struct("<II")   # rows, row_errors
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")

# The worker waits for this line on stderr before it quotes the UDF's output in an error.
OUTPUT_SYNC = b"\x1fkiln-sync\n"

_REPR = []
_LAZY = {}
_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__))


def lazy(name):
    """Imports a standard module on first use (most UDFs never need it)."""
    module = _LAZY.get(name)
    if module is None:
        module = _LAZY[name] = __import__(name)
    return module


def runner_module(name):
    """Imports one of the runner's own modules on first use, from the runner's directory, whatever
    the UDF's imports have put first on sys.path."""
    module = _LAZY.get(name)
    if module is None:
        sys.path.insert(0, _RUNNER_DIR)
        try:
            module = _LAZY[name] = __import__(name)
        finally:
            del sys.path[0]
    return module


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


def base(t):
    code = t.code
    if code == DECIMAL:
        return "DECIMAL(%d, %d)" % (t.precision, t.scale)
    if code == VECTOR:
        return "VECTOR(%d)" % t.dim
    if code in (ARRAY, MAP, TUPLE):
        return "%s(%s)" % (TYPE_NAMES[code], ", ".join(label(c) for c in t.children))
    return TYPE_NAMES[code]


def label(t):
    """A type as error messages spell it, e.g. "ARRAY(INT32 NOT NULL) NULL"."""
    return base(t) + (" NULL" if t.nullable else " NOT NULL")


# ---------------------------------------------------------------- JSON null


class JsonNull:
    """JSON null as a VARIANT value, apart from None, which is SQL NULL (PROTOCOL.md, "Types and
    Python values"). One instance, JSON_NULL; UDF code imports it from databend_udf. Falsy, like
    None; inside a parsed JSON value (a list or dict) null stays None, which is unambiguous there.
    """

    __slots__ = ()

    def __new__(cls):
        return JSON_NULL

    def __repr__(self):
        return "JSON_NULL"

    def __bool__(self):
        return False

    def __reduce__(self):
        return "JSON_NULL"

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


JSON_NULL = object.__new__(JsonNull)


# ---------------------------------------------------------------- errors


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


def udf_file_name(path):
    return os.path.basename(path)


def check_none(values, t, i):
    """Called for a None at index i: fine when t is nullable, else a Bad value."""
    if not t.nullable:
        raise Bad(i, None, t)


def offsets_of(encoded):
    """The i64 offsets of a variable-width column of byte strings."""
    return array.array("q", itertools.accumulate(map(len, encoded), initial=0))


# ---------------------------------------------------------------- I/O


class Channel:
    """Frames over two file descriptors: the protocol's private copies of stdin/stdout."""

    def __init__(self, read_fd, write_fd):
        self.reader = io.FileIO(read_fd, "rb", closefd=False)
        self.read_fd = read_fd
        self.write_fd = write_fd

    def _read_exact(self, n):
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.reader.readinto(view[got:])
            if k is None:
                # Nothing yet on a stream that does not block: a TCP connection under gVisor's
                # host network can read that way even when it is set to block. Wait for data.
                _wait(self.read_fd, False)
                continue
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
            try:
                data = data[os.write(self.write_fd, data):]
            except BlockingIOError:
                _wait(self.write_fd, True)  # a full connection that does not block (see above)

    def write_json(self, frame_type, obj):
        self.write_frame(frame_type, lazy("json").dumps(obj).encode("utf-8"))


def _wait(fd, writing):
    """Waits until fd can be read (or written)."""
    import select
    poller = select.poll()
    poller.register(fd, select.POLLOUT if writing else select.POLLIN)
    poller.poll()


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
