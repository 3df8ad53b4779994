"""Kiln's runner, the column codecs: wire columns to Python values and back, for every batch.

Columns are decoded and encoded whole (memoryview.cast, array, str.split, bytes.join), so the
per-row cost is the UDF's own call and little else. The flat types (numbers, BOOLEAN, STRING,
BINARY, VARIANT arguments) are here; DATE, TIMESTAMP, DECIMAL, VARIANT results and the nested
types are in kiln_nested.py, imported on first use and handed these codecs for the columns inside
theirs. Imports kiln_wire only (PROTOCOL.md, "Columns").
"""

import array
import struct

from kiln_wire import (
    BINARY, BOOLEAN, DECIMAL, FIXED, HAS_NULLS, JSON_NULL, PARAMETERISED, SEPARATED, STRING,
    TUPLE, TYPE_NAMES, U16, U32, VARIANT, VECTOR, WIDTHS, Bad, BatchError, T, check_none, lazy,
    offsets_of, runner_module,
)

SEP = "\x00"     # the separator results are joined with when no value contains it
BOOLS = (False, True)

_TYPE_CACHE = {}


def nested():
    """kiln_nested.py: DATE, TIMESTAMP, DECIMAL, VARIANT results and the nested types."""
    return runner_module("kiln_nested")


# ---------------------------------------------------------------- types


def result_type(view, pos):
    """The result descriptor of a BATCH; a plain type costs a dict lookup."""
    code = view[pos]
    if code in PARAMETERISED:
        return nested().result_type(view, pos)
    key = (code, view[pos + 1])
    t = _TYPE_CACHE.get(key)
    if t is None:
        if code not in TYPE_NAMES:
            raise BatchError("unknown result type code %d" % code, "input")
        t = _TYPE_CACHE[key] = T(code, bool(view[pos + 1]))
    return t, pos + 2


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
        values, pos = nested().decode_other(view, pos, rows, ctype, params, validity,
                                            decode_column)
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
        if ctype == VARIANT and len(values) == rows:
            values = parse_variants(values, validity)
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
        return parse_variants(list(map(data.__getitem__, slices)), validity), pos
    if data.isascii():
        # ASCII: byte offsets are character offsets, so slice one decoded str.
        text = data.decode("ascii")
        return list(map(text.__getitem__, slices)), pos
    try:
        return list(map(bytes.decode, map(data.__getitem__, slices))), pos
    except UnicodeDecodeError as e:
        raise BatchError("a STRING argument is not valid UTF-8: %s" % e, "input")


def parse_variants(texts, validity):
    """VARIANT values from their JSON texts: a JSON null is JSON_NULL, a SQL NULL None.

    Only the top of a value can be both (Query sends SQL NULL as a validity bit, JSON null as the
    text null); inside a list or dict JSON null stays None. One C-level scan finds the nulls, so
    a column without any pays nothing more; the caller's set_nulls puts None back under SQL NULLs.
    """
    loads = lazy("json").loads
    try:
        if validity is None:
            values = list(map(loads, texts))
        else:
            values = [loads(b) if ok else None for b, ok in zip(texts, validity)]
    except ValueError as e:
        raise BatchError("a VARIANT argument is not valid JSON: %s" % e, "input")
    if None in values:
        values = [JSON_NULL if v is None else v for v in values]
    return values


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
        return nested().encode_other(values, t, encode_column)
    head = bytes((code, HAS_NULLS if validity is not None else 0))
    return [head] + ([validity] if validity is not None else []) + parts


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
