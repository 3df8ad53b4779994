"""Kiln's runner, the types most UDFs never need: imported by kiln_columns.py on first use.

DATE, TIMESTAMP, DECIMAL and VARIANT results and the nested types (ARRAY, MAP, TUPLE, VECTOR) in
both directions, and their type descriptors. Kept apart because every module is compiled at every
start (a sandbox caches no bytecode) and every millisecond there is cold-start time. The columns
inside a nested column go through the flat codecs, which the caller hands in (decode_column,
encode_column), so this module imports kiln_wire only. See PROTOCOL.md.
"""

import array
import itertools

from kiln_wire import (
    ARRAY, BOOLEAN, BINARY, DATE, DECIMAL, FIXED, FLOAT32, HAS_NULLS, JSON_NULL, MAP, STRING,
    TIMESTAMP, TUPLE, TYPE_NAMES, U16, U32, VARIANT, VECTOR, Bad, BatchError, T, check_none, lazy,
    offsets_of, short_repr,
)

# Days from 0001-01-01 (ordinal 1) to 1970-01-01.
EPOCH_ORDINAL = 719163

# ---------------------------------------------------------------- types


def read_type(view, pos):
    """Reads a type descriptor at view[pos:]; returns (T, next position)."""
    code = view[pos]
    nullable = bool(view[pos + 1])
    pos += 2
    if code == DECIMAL:
        return T(code, nullable, precision=view[pos], scale=view[pos + 1]), pos + 2
    if code == ARRAY:
        item, pos = read_type(view, pos)
        return T(code, nullable, children=(item,)), pos
    if code == MAP:
        key, pos = read_type(view, pos)
        value, pos = read_type(view, pos)
        return T(code, nullable, children=(key, value)), pos
    if code == TUPLE:
        count = U16.unpack_from(view, pos)[0]
        pos += 2
        children = []
        for _ in range(count):
            child, pos = read_type(view, pos)
            children.append(child)
        return T(code, nullable, children=tuple(children)), pos
    if code == VECTOR:
        return T(code, nullable, dim=U32.unpack_from(view, pos)[0]), pos + 4
    if code not in TYPE_NAMES:
        raise BatchError("unknown result type code %d" % code, "input")
    return T(code, nullable), pos


def skip_type(view, pos):
    code = view[pos]
    pos += 2
    if code == DECIMAL:
        return pos + 2
    if code == ARRAY:
        return skip_type(view, pos)
    if code == MAP:
        return skip_type(view, skip_type(view, pos))
    if code == TUPLE:
        count = U16.unpack_from(view, pos)[0]
        pos += 2
        for _ in range(count):
            pos = skip_type(view, pos)
        return pos
    if code == VECTOR:
        return pos + 4
    return pos


def result_type(view, pos):
    """A nested or parameterised result descriptor, parsed once per distinct descriptor."""
    end = skip_type(view, pos)
    key = view[pos:end].tobytes()
    t = _TYPE_CACHE.get(key)
    if t is None:
        t = _TYPE_CACHE[key] = read_type(view, pos)[0]
    return t, end


_TYPE_CACHE = {}


# ---------------------------------------------------------------- decoding


def decode_other(view, pos, rows, ctype, params, validity, decode_column):
    """DATE, TIMESTAMP, DECIMAL and the nested types; returns (values, next position).

    decode_column decodes the columns inside ARRAY, MAP and TUPLE (kiln_columns.decode_column).
    """
    if ctype == DATE:
        end = pos + rows * 4
        days = view[pos:end].cast("i").tolist()
        if validity is not None:
            days = [d if ok else 0 for d, ok in zip(days, validity)]
        fromordinal = lazy("datetime").date.fromordinal
        try:
            return list(map(fromordinal, map(EPOCH_ORDINAL.__add__, days))), end
        except (ValueError, OverflowError) as e:
            raise BatchError("a DATE argument is out of Python's range (years 1-9999): %s" % e,
                             "input")
    if ctype == TIMESTAMP:
        end = pos + rows * 8
        micros = view[pos:end].cast("q").tolist()
        if validity is not None:
            micros = [m if ok else 0 for m, ok in zip(micros, validity)]
        datetime = lazy("datetime")
        epoch = datetime.datetime(1970, 1, 1)
        repeat = itertools.repeat
        try:
            return list(map(epoch.__add__, map(datetime.timedelta, repeat(0), repeat(0), micros))), end
        except (ValueError, OverflowError) as e:
            raise BatchError("a TIMESTAMP argument is out of Python's range (years 1-9999): %s"
                             % e, "input")
    if ctype == DECIMAL:
        return decode_decimal(view, pos, rows, params)
    if ctype == ARRAY or ctype == MAP:
        end = pos + (rows + 1) * 8
        offsets = view[pos:end].cast("q").tolist()
        pos = end
        count = offsets[rows] if rows else 0
        slices = list(map(slice, offsets[:-1], offsets[1:]))
        if ctype == ARRAY:
            items, _, pos = decode_column(view, pos, count)
            return list(map(items.__getitem__, slices)), pos
        keys, _, pos = decode_column(view, pos, count)
        vals, _, pos = decode_column(view, pos, count)
        return list(map(dict, map(zip, map(keys.__getitem__, slices),
                                  map(vals.__getitem__, slices)))), pos
    if ctype == TUPLE:
        fields = []
        for _ in range(params):
            field, _, pos = decode_column(view, pos, rows)
            fields.append(field)
        return (list(zip(*fields)) if fields else [()] * rows), pos
    if ctype == VECTOR:
        dim = params
        end = pos + rows * dim * 4
        floats = view[pos:end].cast("f").tolist()
        return list(map(floats.__getitem__, map(slice, range(0, rows * dim, dim),
                                                range(dim, rows * dim + dim, dim)))), end
    raise BatchError("unknown column type code %d" % ctype, "input")


def decode_decimal(view, pos, rows, params):
    precision, scale, width = params
    end = pos + rows * width
    if width == 8:
        ints = view[pos:end].cast("q").tolist()
    else:
        data = view[pos:end].tobytes()
        from_bytes = int.from_bytes
        ints = [from_bytes(data[i:i + width], "little", signed=True)
                for i in range(0, rows * width, width)]
    decimal = lazy("decimal")
    if scale == 0:
        return list(map(decimal.Decimal, ints)), end
    exact = decimal.Context(prec=200)
    Decimal = decimal.Decimal
    return [Decimal(i).scaleb(-scale, exact) for i in ints], end


# ---------------------------------------------------------------- encoding


def encode_other(values, t, encode_column):
    """The parts of a VARIANT, DATE, TIMESTAMP, DECIMAL or nested column; raises Bad.

    encode_column encodes the columns inside ARRAY, MAP and TUPLE (kiln_columns.encode_column).
    """
    code = t.code
    params = b""
    if code == VARIANT:
        validity, (offsets, data) = encode_variant(values, t)
        parts = [offsets, data]
    elif code == DATE:
        validity, body = encode_dates(values, t)
        parts = [body]
    elif code == TIMESTAMP:
        validity, body = encode_timestamps(values, t)
        parts = [body]
    elif code == DECIMAL:
        width = 16 if t.precision <= 38 else 32
        params = bytes((t.precision, t.scale, width))
        validity, body = encode_decimals(values, t, width)
        parts = [body]
    elif code == ARRAY or code == MAP:
        validity, parts = encode_nested_list(values, t, encode_column)
    elif code == TUPLE:
        params = U16.pack(len(t.children))
        validity, parts = encode_tuple(values, t, encode_column)
    elif code == VECTOR:
        params = U32.pack(t.dim)
        validity, body = encode_vector(values, t)
        parts = [body]
    else:
        raise BatchError("unknown result type code %d" % code, "input")
    head = bytes((code, HAS_NULLS if validity is not None else 0)) + params
    return [head] + ([validity] if validity is not None else []) + parts


def json_null(value):
    """The JSON encoder's hook for objects it does not know: JSON_NULL, anywhere, is null."""
    if value is JSON_NULL:
        return None
    raise TypeError("Object of type %s is not JSON serializable" % type(value).__name__)


def encode_variant(results, t):
    """JSON texts; None is SQL NULL when t is nullable, else JSON null, as JSON_NULL always is."""
    json = lazy("json")
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                             default=json_null).encode
    encoded = [b""] * len(results)
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None and t.nullable:
            continue
        if isinstance(v, (bytes, bytearray)):
            v = bytes(v).decode("utf-8", "replace")  # as databend-udf: bytes become a JSON string
        try:
            encoded[i] = dumps(v).encode("utf-8")
        except (TypeError, ValueError) as e:
            raise Bad(i, v, t, "it cannot be written as JSON (%s)" % e)
        validity[i] = 1
    return (validity if 0 in validity else None), (offsets_of(encoded), b"".join(encoded))


def encode_dates(results, t):
    try:
        return None, array.array("i", [v.toordinal() - EPOCH_ORDINAL for v in results])
    except (AttributeError, TypeError, OverflowError):
        pass
    date = lazy("datetime").date
    values = array.array("i", bytes(4 * len(results)))
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            continue
        if not isinstance(v, date):
            raise Bad(i, v, t)
        values[i] = v.toordinal() - EPOCH_ORDINAL
        validity[i] = 1
    return (validity if 0 in validity else None), values


def encode_timestamps(results, t):
    datetime = lazy("datetime")
    epoch = datetime.datetime(1970, 1, 1)
    micro = datetime.timedelta(microseconds=1)
    try:
        return None, array.array("q", [(v - epoch) // micro for v in results])
    except (TypeError, OverflowError):
        pass
    values = array.array("q", bytes(8 * len(results)))
    validity = bytearray(len(results))
    utc = datetime.timezone.utc
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            continue
        if isinstance(v, datetime.datetime):
            if v.tzinfo is not None and v.utcoffset() is not None:
                v = v.astimezone(utc).replace(tzinfo=None)
        elif isinstance(v, datetime.date):
            v = datetime.datetime(v.year, v.month, v.day)
        else:
            raise Bad(i, v, t)
        try:
            values[i] = (v - epoch) // micro
        except OverflowError:
            raise Bad(i, v, t, "out of range")
        validity[i] = 1
    return (validity if 0 in validity else None), values


def encode_decimals(results, t, width):
    decimal = lazy("decimal")
    Decimal = decimal.Decimal
    exact = decimal.Context(prec=200, rounding=decimal.ROUND_HALF_UP)
    quantum = Decimal(1).scaleb(-t.scale, exact)
    limit = 10 ** t.precision
    scale = t.scale
    out = []
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            out.append(0)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
            raise Bad(i, v, t)
        if isinstance(v, int):
            n = v * 10 ** scale
        else:
            d = Decimal(v) if isinstance(v, float) else v
            if not d.is_finite():
                raise Bad(i, v, t, "not a finite number")
            try:
                n = int(d.quantize(quantum, context=exact).scaleb(scale, exact))
            except decimal.InvalidOperation:
                raise Bad(i, v, t, "it does not fit %d digits" % t.precision)
        if -limit < n < limit:
            out.append(n)
        else:
            raise Bad(i, v, t, "it does not fit %d digits" % t.precision)
        validity[i] = 1
    if width == 16:
        body = b"".join([n.to_bytes(16, "little", signed=True) for n in out])
    else:
        body = b"".join([n.to_bytes(32, "little", signed=True) for n in out])
    return (validity if 0 in validity else None), body


def default_value(t):
    """A placeholder for a not-null child under a NULL parent (its value is never read)."""
    code = t.code
    if t.nullable:
        return None
    if code in FIXED:
        return 0
    if code == BOOLEAN:
        return False
    if code == STRING:
        return ""
    if code == BINARY:
        return b""
    if code == DATE:
        return lazy("datetime").date(1970, 1, 1)
    if code == TIMESTAMP:
        return lazy("datetime").datetime(1970, 1, 1)
    if code == DECIMAL:
        return 0
    if code == VARIANT:
        return None
    if code == ARRAY:
        return []
    if code == MAP:
        return {}
    if code == TUPLE:
        return tuple(default_value(c) for c in t.children)
    if code == VECTOR:
        return [0.0] * t.dim
    return None


def as_sequence(v):
    """A list of the items of v, or None when v is not a sequence of items (str, dict, scalars)."""
    if type(v) is list:
        return v
    if isinstance(v, (str, bytes, bytearray, memoryview, dict)):
        return None
    try:
        return list(v)
    except TypeError:
        return None


def encode_nested_list(results, t, encode_column):
    """ARRAY and MAP: offsets, then the items (or the keys and the values)."""
    is_map = t.code == MAP
    n = len(results)
    validity = bytearray(n)
    offsets = array.array("q", [0])
    items = []
    values = [] if is_map else None
    total = 0
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            offsets.append(total)
            continue
        if is_map:
            if not hasattr(v, "items") or isinstance(v, (str, bytes)):
                raise Bad(i, v, t)
            try:
                pairs = list(v.items())
            except Exception:
                raise Bad(i, v, t)
            items.extend([k for k, _ in pairs])
            values.extend([x for _, x in pairs])
            total += len(pairs)
        else:
            seq = as_sequence(v)
            if seq is None:
                raise Bad(i, v, t)
            items.extend(seq)
            total += len(seq)
        offsets.append(total)
        validity[i] = 1
    children = []
    try:
        children.extend(encode_column(items, t.children[0]))
        if is_map:
            children.extend(encode_column(values, t.children[1]))
    except Bad as b:
        bisect = lazy("bisect")
        row = bisect.bisect_right(offsets, b.index) - 1
        k = b.index - offsets[row]
        if is_map:
            keys = list(results[row].keys())
            inner = ("key %s" % short_repr(keys[k])) if b.t is t.children[0] and not b.path \
                else "[%s]" % short_repr(keys[k])
        else:
            inner = "[%d]" % k
        raise Bad(row, b.value, b.t, b.extra, inner + b.path)
    return (validity if 0 in validity else None), [offsets] + children


def encode_tuple(results, t, encode_column):
    n = len(results)
    count = len(t.children)
    validity = bytearray(n)
    rows = []
    placeholder = tuple(default_value(c) for c in t.children)
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            rows.append(placeholder)
            continue
        seq = as_sequence(v)
        if seq is None or len(seq) != count:
            raise Bad(i, v, t, None if seq is None else
                      "it has %d fields, the TUPLE has %d" % (len(seq), count))
        rows.append(seq)
        validity[i] = 1
    parts = []
    for f, child in enumerate(t.children):
        column = [r[f] for r in rows]
        try:
            parts.extend(encode_column(column, child))
        except Bad as b:
            raise Bad(b.index, b.value, b.t, b.extra, "[%d]" % f + b.path)
    return (validity if 0 in validity else None), parts


def encode_vector(results, t):
    n = len(results)
    dim = t.dim
    validity = bytearray(n)
    flat = []
    zeros = [0.0] * dim
    for i, v in enumerate(results):
        if v is None:
            check_none(results, t, i)
            flat.extend(zeros)
            continue
        seq = as_sequence(v)
        if seq is None or len(seq) != dim:
            raise Bad(i, v, t, None if seq is None else
                      "it has %d values, the VECTOR has %d" % (len(seq), dim))
        flat.extend(seq)
        validity[i] = 1
    try:
        body = array.array("f", flat)
    except (TypeError, OverflowError):
        for j, x in enumerate(flat):
            try:
                array.array("f", [x])
            except (TypeError, OverflowError):
                raise Bad(j // dim, x, T(FLOAT32, False), None, "[%d]" % (j % dim))
        raise
    return (validity if 0 in validity else None), body
