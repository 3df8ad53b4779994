"""Kiln's runner, the parts most UDFs never need: imported by kiln_runner.py on first use.

DATE, TIMESTAMP, DECIMAL, VARIANT results and the nested types (ARRAY, MAP, TUPLE, VECTOR), the
options of a databend_udf decorator (skip_null, batch_mode, io_threads, on_error) and the
messages for results a type cannot hold. Kept apart because the runner's own source is compiled
at every start (a sandbox caches no bytecode) and every millisecond there is cold-start time.
See PROTOCOL.md.
"""

import itertools
import struct
import sys

import kiln_runner as core  # the running script, registered under this name before any import

PYTHON_TYPE = {core.BOOLEAN: "bool", core.STRING: "str", core.BINARY: "bytes",
               core.FLOAT32: "float", core.FLOAT64: "float",
               core.DATE: "datetime.date", core.TIMESTAMP: "datetime.datetime",
               core.DECIMAL: "decimal.Decimal or int", core.VARIANT: "a JSON-serialisable value",
               core.ARRAY: "list", core.MAP: "dict", core.TUPLE: "tuple",
               core.VECTOR: "list of float"}


# ---------------------------------------------------------------- types


def base(t):
    code = t.code
    if code == core.DECIMAL:
        return "DECIMAL(%d, %d)" % (t.precision, t.scale)
    if code == core.VECTOR:
        return "VECTOR(%d)" % t.dim
    if code in (core.ARRAY, core.MAP, core.TUPLE):
        return "%s(%s)" % (core.TYPE_NAMES[code], ", ".join(label(c) for c in t.children))
    return core.TYPE_NAMES[code]


def label(t):
    """A type as error messages spell it, e.g. "ARRAY(INT32 NOT NULL) NULL"."""
    return base(t) + (" NULL" if t.nullable else " NOT NULL")


def read_type(view, pos):
    """Reads a type descriptor at view[pos:]; returns (T, next position)."""
    code = view[pos]
    nullable = bool(view[pos + 1])
    pos += 2
    if code == core.DECIMAL:
        return core.T(code, nullable, precision=view[pos], scale=view[pos + 1]), pos + 2
    if code == core.ARRAY:
        item, pos = read_type(view, pos)
        return core.T(code, nullable, children=(item,)), pos
    if code == core.MAP:
        key, pos = read_type(view, pos)
        value, pos = read_type(view, pos)
        return core.T(code, nullable, children=(key, value)), pos
    if code == core.TUPLE:
        count = core.U16.unpack_from(view, pos)[0]
        pos += 2
        children = []
        for _ in range(count):
            child, pos = read_type(view, pos)
            children.append(child)
        return core.T(code, nullable, children=tuple(children)), pos
    if code == core.VECTOR:
        return core.T(code, nullable, dim=core.U32.unpack_from(view, pos)[0]), pos + 4
    if code not in core.TYPE_NAMES:
        raise core.BatchError("unknown result type code %d" % code, "input")
    return core.T(code, nullable), pos


def skip_type(view, pos):
    code = view[pos]
    pos += 2
    if code == core.DECIMAL:
        return pos + 2
    if code == core.ARRAY:
        return skip_type(view, pos)
    if code == core.MAP:
        return skip_type(view, skip_type(view, pos))
    if code == core.TUPLE:
        count = core.U16.unpack_from(view, pos)[0]
        pos += 2
        for _ in range(count):
            pos = skip_type(view, pos)
        return pos
    if code == core.VECTOR:
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


# ---------------------------------------------------------------- errors


def describe_exception(e, path):
    """"Type: message (udf.py line N, in f: source)"."""
    text = core.exception_name(e)
    message = core.exception_text(e)
    if message:
        text += ": " + message
    frame = core.last_udf_frame(e.__traceback__, path)
    if frame is not None:
        where = "%s line %d, in %s" % (core.udf_file_name(path), frame.lineno, frame.name)
        if frame.line:
            where += ": " + frame.line.strip()
        text += " (" + where + ")"
    return text


def describe_call_error(e, path, row, args):
    text = describe_exception(e, path)
    if row is None:
        return text + " [in batch mode, on the whole batch]"
    text += " [row %d of the batch" % row
    if args is not None:
        text += ", arguments %s" % core.short_repr(tuple(args))
    return text + "]"


# ---------------------------------------------------------------- decoding


def decode_other(view, pos, rows, ctype, params, validity):
    """DATE, TIMESTAMP, DECIMAL and the nested types; returns (values, next position)."""
    if ctype == core.DATE:
        end = pos + rows * 4
        days = view[pos:end].cast("i").tolist()
        if validity is not None:
            days = [d if ok else 0 for d, ok in zip(days, validity)]
        fromordinal = core.lazy("datetime").date.fromordinal
        try:
            return list(map(fromordinal, map(core.EPOCH_ORDINAL.__add__, days))), end
        except (ValueError, OverflowError) as e:
            raise core.BatchError("a DATE argument is out of Python's range (years 1-9999): %s" % e,
                                  "input")
    if ctype == core.TIMESTAMP:
        end = pos + rows * 8
        micros = view[pos:end].cast("q").tolist()
        if validity is not None:
            micros = [m if ok else 0 for m, ok in zip(micros, validity)]
        datetime = core.lazy("datetime")
        epoch = datetime.datetime(1970, 1, 1)
        repeat = itertools.repeat
        try:
            return list(map(epoch.__add__, map(datetime.timedelta, repeat(0), repeat(0), micros))), end
        except (ValueError, OverflowError) as e:
            raise core.BatchError("a TIMESTAMP argument is out of Python's range (years 1-9999): %s"
                                  % e, "input")
    if ctype == core.DECIMAL:
        return decode_decimal(view, pos, rows, params)
    if ctype == core.ARRAY or ctype == core.MAP:
        end = pos + (rows + 1) * 8
        offsets = view[pos:end].cast("q").tolist()
        pos = end
        count = offsets[rows] if rows else 0
        slices = list(map(slice, offsets[:-1], offsets[1:]))
        if ctype == core.ARRAY:
            items, _, pos = core.decode_column(view, pos, count)
            return list(map(items.__getitem__, slices)), pos
        keys, _, pos = core.decode_column(view, pos, count)
        vals, _, pos = core.decode_column(view, pos, count)
        return list(map(dict, map(zip, map(keys.__getitem__, slices),
                                  map(vals.__getitem__, slices)))), pos
    if ctype == core.TUPLE:
        fields = []
        for _ in range(params):
            field, _, pos = core.decode_column(view, pos, rows)
            fields.append(field)
        return (list(zip(*fields)) if fields else [()] * rows), pos
    if ctype == core.VECTOR:
        dim = params
        end = pos + rows * dim * 4
        floats = view[pos:end].cast("f").tolist()
        return list(map(floats.__getitem__, map(slice, range(0, rows * dim, dim),
                                                range(dim, rows * dim + dim, dim)))), end
    raise core.BatchError("unknown column type code %d" % ctype, "input")


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
    decimal = core.lazy("decimal")
    if scale == 0:
        return list(map(decimal.Decimal, ints)), end
    exact = decimal.Context(prec=200)
    Decimal = decimal.Decimal
    return [Decimal(i).scaleb(-scale, exact) for i in ints], end


# ---------------------------------------------------------------- calling with options


def pool(udf):
    """The thread pool of io_threads=N, made on first use."""
    if udf.executor is None:
        import threading
        from concurrent.futures import ThreadPoolExecutor
        import os
        if os.environ.get("KILN_MEMORY_LIMIT"):
            # Under an address-space limit the default 8 MiB stacks would cap the threads.
            threading.stack_size(2 << 20)
        udf.executor = ThreadPoolExecutor(max_workers=udf.io_threads)
    return udf.executor


class RowErrors:
    """Rows that failed and became NULL (on_error="null"): counted, and the first few logged."""

    def __init__(self, first_row):
        self.first_row = first_row
        self.count = 0

    def add(self, row, text):
        self.count += 1
        if self.count <= core.LOGGED_ROW_ERRORS:
            sys.stderr.write("kiln_runner: row %d failed and was returned as NULL (on_error='null'): "
                             "%s\n" % (self.first_row + row, text))

    def finish(self):
        if self.count > core.LOGGED_ROW_ERRORS:
            sys.stderr.write("kiln_runner: %d more rows of the batch at row %d failed and were "
                             "returned as NULL\n" % (self.count - core.LOGGED_ROW_ERRORS, self.first_row))


def compute(udf, columns, validities, rows, first_row, errors):
    """Calls the function over the batch; returns one result per row."""
    if udf.skip_null:
        present = [v for v in validities if v is not None]
        if present:
            mask = present[0] if len(present) == 1 else bytes(map(min, *present))
            if 0 in mask:
                selected = list(itertools.compress(range(rows), mask))
                picked = [list(map(c.__getitem__, selected)) for c in columns]
                results = call(udf, picked, len(selected), first_row, selected, errors)
                out = [None] * rows
                for i, r in zip(selected, results):
                    out[i] = r
                return out
    return call(udf, columns, rows, first_row, None, errors)


def call(udf, columns, rows, first_row, selected, errors):
    func = udf.func
    path = udf.path

    def row_of(i):
        return first_row + (selected[i] if selected is not None else i)

    if udf.batch_mode:
        try:
            out = func(*columns)
        except MemoryError:
            raise
        except BaseException as e:
            if not udf.on_error_null:
                raise core.BatchError(describe_call_error(e, path, None, None))
            text = describe_exception(e, path)
            for i in range(rows):
                errors.add(selected[i] if selected is not None else i, text)
            return [None] * rows
        try:
            out = list(out)
        except TypeError:
            raise core.BatchError("in batch mode the function must return a list with one value per "
                             "row, but it returned %s %s" % (type(out).__name__, core.short_repr(out)))
        if len(out) != rows:
            raise core.BatchError("in batch mode the function must return one value per row: it got %d "
                             "rows and returned %d values" % (rows, len(out)))
        return out

    if udf.io_threads > 1:
        futures = [pool(udf).submit(func, *args) for args in zip(*columns)] if columns \
            else [pool(udf).submit(func) for _ in range(rows)]
        out = []
        for i, future in enumerate(futures):
            try:
                out.append(future.result())
            except MemoryError:
                raise
            except BaseException as e:
                if not udf.on_error_null:
                    for f in futures[i + 1:]:
                        f.cancel()
                    args = [c[i] for c in columns]
                    raise core.BatchError(describe_call_error(e, path, row_of(i), args))
                out.append(None)
                errors.add(row_of(i) - first_row, describe_exception(e, path))
        return out

    if not udf.on_error_null:
        if columns:
            iterators = [iter(c) for c in columns]
            try:
                return list(map(func, *iterators))
            except MemoryError:
                raise
            except BaseException as e:
                # map() has taken row+1 items from every iterator when func raised on row.
                row = rows - 1 - iterators[0].__length_hint__()
                args = [c[row] for c in columns] if 0 <= row < rows else None
                raise core.BatchError(describe_call_error(e, path, row_of(row), args))
        counter = iter(range(rows))
        try:
            return [func() for _ in counter]
        except MemoryError:
            raise
        except BaseException as e:
            row = rows - 1 - counter.__length_hint__()
            raise core.BatchError(describe_call_error(e, path, row_of(row), None))

    # on_error="null": a failing row becomes None and the map carries on after it.
    out = []
    iterators = [iter(c) for c in columns] if columns else [iter(range(rows))]
    target = func if columns else (lambda _: func())
    while True:
        try:
            out.extend(map(target, *iterators))
            return out
        except MemoryError:
            raise
        except BaseException as e:
            i = len(out)
            out.append(None)
            errors.add(row_of(i) - first_row, describe_exception(e, path))


# ---------------------------------------------------------------- encoding


def encode_other(values, t):
    """The parts of a VARIANT, DATE, TIMESTAMP, DECIMAL or nested column; raises Bad."""
    code = t.code
    params = b""
    if code == core.VARIANT:
        validity, (offsets, data) = encode_variant(values, t)
        parts = [offsets, data]
    elif code == core.DATE:
        validity, body = encode_dates(values, t)
        parts = [body]
    elif code == core.TIMESTAMP:
        validity, body = encode_timestamps(values, t)
        parts = [body]
    elif code == core.DECIMAL:
        width = 16 if t.precision <= 38 else 32
        params = bytes((t.precision, t.scale, width))
        validity, body = encode_decimals(values, t, width)
        parts = [body]
    elif code == core.ARRAY or code == core.MAP:
        validity, parts = encode_nested_list(values, t)
    elif code == core.TUPLE:
        params = core.U16.pack(len(t.children))
        validity, parts = encode_tuple(values, t)
    elif code == core.VECTOR:
        params = core.U32.pack(t.dim)
        validity, body = encode_vector(values, t)
        parts = [body]
    else:
        raise core.BatchError("unknown result type code %d" % code, "input")
    head = bytes((code, core.HAS_NULLS if validity is not None else 0)) + params
    return [head] + ([validity] if validity is not None else []) + parts


def encode_variant(results, t):
    json = core.lazy("json")
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
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
            raise core.Bad(i, v, t, "it cannot be written as JSON (%s)" % e)
        validity[i] = 1
    return (validity if 0 in validity else None), (core.offsets_of(encoded), b"".join(encoded))


def encode_dates(results, t):
    try:
        return None, core.array.array("i", [v.toordinal() - core.EPOCH_ORDINAL for v in results])
    except (AttributeError, TypeError, OverflowError):
        pass
    date = core.lazy("datetime").date
    values = core.array.array("i", bytes(4 * len(results)))
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            core.check_none(results, t, i)
            continue
        if not isinstance(v, date):
            raise core.Bad(i, v, t)
        values[i] = v.toordinal() - core.EPOCH_ORDINAL
        validity[i] = 1
    return (validity if 0 in validity else None), values


def encode_timestamps(results, t):
    datetime = core.lazy("datetime")
    epoch = datetime.datetime(1970, 1, 1)
    micro = datetime.timedelta(microseconds=1)
    try:
        return None, core.array.array("q", [(v - epoch) // micro for v in results])
    except (TypeError, OverflowError):
        pass
    values = core.array.array("q", bytes(8 * len(results)))
    validity = bytearray(len(results))
    utc = datetime.timezone.utc
    for i, v in enumerate(results):
        if v is None:
            core.check_none(results, t, i)
            continue
        if isinstance(v, datetime.datetime):
            if v.tzinfo is not None and v.utcoffset() is not None:
                v = v.astimezone(utc).replace(tzinfo=None)
        elif isinstance(v, datetime.date):
            v = datetime.datetime(v.year, v.month, v.day)
        else:
            raise core.Bad(i, v, t)
        try:
            values[i] = (v - epoch) // micro
        except OverflowError:
            raise core.Bad(i, v, t, "out of range")
        validity[i] = 1
    return (validity if 0 in validity else None), values


def encode_decimals(results, t, width):
    decimal = core.lazy("decimal")
    Decimal = decimal.Decimal
    exact = decimal.Context(prec=200, rounding=decimal.ROUND_HALF_UP)
    quantum = Decimal(1).scaleb(-t.scale, exact)
    limit = 10 ** t.precision
    scale = t.scale
    out = []
    validity = bytearray(len(results))
    for i, v in enumerate(results):
        if v is None:
            core.check_none(results, t, i)
            out.append(0)
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
            raise core.Bad(i, v, t)
        if isinstance(v, int):
            n = v * 10 ** scale
        else:
            d = Decimal(v) if isinstance(v, float) else v
            if not d.is_finite():
                raise core.Bad(i, v, t, "not a finite number")
            try:
                n = int(d.quantize(quantum, context=exact).scaleb(scale, exact))
            except decimal.InvalidOperation:
                raise core.Bad(i, v, t, "it does not fit %d digits" % t.precision)
        if -limit < n < limit:
            out.append(n)
        else:
            raise core.Bad(i, v, t, "it does not fit %d digits" % t.precision)
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
    if code in core.FIXED:
        return 0
    if code == core.BOOLEAN:
        return False
    if code == core.STRING:
        return ""
    if code == core.BINARY:
        return b""
    if code == core.DATE:
        return core.lazy("datetime").date(1970, 1, 1)
    if code == core.TIMESTAMP:
        return core.lazy("datetime").datetime(1970, 1, 1)
    if code == core.DECIMAL:
        return 0
    if code == core.VARIANT:
        return None
    if code == core.ARRAY:
        return []
    if code == core.MAP:
        return {}
    if code == core.TUPLE:
        return tuple(default_value(c) for c in t.children)
    if code == core.VECTOR:
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


def encode_nested_list(results, t):
    """ARRAY and MAP: offsets, then the items (or the keys and the values)."""
    is_map = t.code == core.MAP
    n = len(results)
    validity = bytearray(n)
    offsets = core.array.array("q", [0])
    items = []
    values = [] if is_map else None
    total = 0
    for i, v in enumerate(results):
        if v is None:
            core.check_none(results, t, i)
            offsets.append(total)
            continue
        if is_map:
            if not hasattr(v, "items") or isinstance(v, (str, bytes)):
                raise core.Bad(i, v, t)
            try:
                pairs = list(v.items())
            except Exception:
                raise core.Bad(i, v, t)
            items.extend([k for k, _ in pairs])
            values.extend([x for _, x in pairs])
            total += len(pairs)
        else:
            seq = as_sequence(v)
            if seq is None:
                raise core.Bad(i, v, t)
            items.extend(seq)
            total += len(seq)
        offsets.append(total)
        validity[i] = 1
    children = []
    try:
        children.extend(core.encode_column(items, t.children[0]))
        if is_map:
            children.extend(core.encode_column(values, t.children[1]))
    except core.Bad as b:
        bisect = core.lazy("bisect")
        row = bisect.bisect_right(offsets, b.index) - 1
        k = b.index - offsets[row]
        if is_map:
            keys = list(results[row].keys())
            inner = ("key %s" % core.short_repr(keys[k])) if b.t is t.children[0] and not b.path \
                else "[%s]" % core.short_repr(keys[k])
        else:
            inner = "[%d]" % k
        raise core.Bad(row, b.value, b.t, b.extra, inner + b.path)
    return (validity if 0 in validity else None), [offsets] + children


def encode_tuple(results, t):
    n = len(results)
    count = len(t.children)
    validity = bytearray(n)
    rows = []
    placeholder = tuple(default_value(c) for c in t.children)
    for i, v in enumerate(results):
        if v is None:
            core.check_none(results, t, i)
            rows.append(placeholder)
            continue
        seq = as_sequence(v)
        if seq is None or len(seq) != count:
            raise core.Bad(i, v, t, None if seq is None else
                      "it has %d fields, the TUPLE has %d" % (len(seq), count))
        rows.append(seq)
        validity[i] = 1
    parts = []
    for f, child in enumerate(t.children):
        column = [r[f] for r in rows]
        try:
            parts.extend(core.encode_column(column, child))
        except core.Bad as b:
            raise core.Bad(b.index, b.value, b.t, b.extra, "[%d]" % f + b.path)
    return (validity if 0 in validity else None), parts


def encode_vector(results, t):
    n = len(results)
    dim = t.dim
    validity = bytearray(n)
    flat = []
    zeros = [0.0] * dim
    for i, v in enumerate(results):
        if v is None:
            core.check_none(results, t, i)
            flat.extend(zeros)
            continue
        seq = as_sequence(v)
        if seq is None or len(seq) != dim:
            raise core.Bad(i, v, t, None if seq is None else
                      "it has %d values, the VECTOR has %d" % (len(seq), dim))
        flat.extend(seq)
        validity[i] = 1
    try:
        body = core.array.array("f", flat)
    except (TypeError, OverflowError):
        for j, x in enumerate(flat):
            try:
                core.array.array("f", [x])
            except (TypeError, OverflowError):
                raise core.Bad(j // dim, x, core.T(core.FLOAT32, False), None, "[%d]" % (j % dim))
        raise
    return (validity if 0 in validity else None), body


# ---------------------------------------------------------------- bad results


def expected_python(t):
    return PYTHON_TYPE.get(t.code, "int")


def bad_value_message(b, results, t, first_row):
    row = first_row + b.index
    if b.value is None and not b.path:
        return ("the function returned None for row %d, but the result type is %s; return a "
                "value, or declare the result type NULL" % (row, label(t)))
    if not b.path:
        text = "the function returned %s %s for row %d, but the result type is %s (expected %s)" % (
            type(b.value).__name__, core.short_repr(b.value), row, label(t), expected_python(t))
    else:
        what = "None" if b.value is None else "%s %s" % (type(b.value).__name__, core.short_repr(b.value))
        text = ("the function returned %s for row %d, but the result type is %s: the value at %s "
                "is %s, which %s cannot hold (expected %s)" % (
                    core.short_repr(results[b.index]), row, label(t), b.path, what, label(b.t),
                    "NULL" if b.value is None else expected_python(b.t)))
    if b.extra:
        text += ": " + b.extra
    return text


def bad_result(b, results, t, first_row, udf, errors):
    """A result value the type cannot hold: the call's error, or with on_error="null" a NULL."""
    message = bad_value_message(b, results, t, first_row)
    if errors is None:
        raise core.BatchError(message)
    results[b.index] = None
    errors.add(b.index, message)


def null_every_bad_result(results, t, first_row, errors):
    """Many bad values: finds them all in one pass instead of one encode per value."""
    for i, v in enumerate(results):
        if v is not None:
            try:
                core.encode_column([v], t)
            except core.Bad as b:
                b.index = i
                errors.add(i, bad_value_message(b, results, t, first_row))
                results[i] = None
