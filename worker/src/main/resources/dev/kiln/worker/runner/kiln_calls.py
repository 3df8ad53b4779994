"""Kiln's runner, calling the UDF the less common ways, and explaining what went wrong.

The options of a databend_udf decorator (skip_null, batch_mode, io_threads, on_error="null"),
the messages for a call that raised and for results the type cannot hold. Most UDFs never need
any of it, so the serve loop imports it on first use. Imports kiln_wire only. See PROTOCOL.md.
"""

import itertools
import sys

from kiln_wire import (
    ARRAY, BINARY, BOOLEAN, DATE, DECIMAL, FLOAT32, FLOAT64, MAP, STRING, TIMESTAMP, TUPLE,
    VARIANT, VECTOR, Bad, BatchError, exception_name, exception_text, label, last_udf_frame,
    short_repr, udf_file_name,
)

# Rows whose errors are written to stderr per batch when on_error="null".
LOGGED_ROW_ERRORS = 3

PYTHON_TYPE = {BOOLEAN: "bool", STRING: "str", BINARY: "bytes",
               FLOAT32: "float", FLOAT64: "float",
               DATE: "datetime.date", TIMESTAMP: "datetime.datetime",
               DECIMAL: "decimal.Decimal or int", VARIANT: "a JSON-serialisable value",
               ARRAY: "list", MAP: "dict", TUPLE: "tuple",
               VECTOR: "list of float"}


# ---------------------------------------------------------------- errors


def describe_exception(e, path):
    """"Type: message (udf.py line N, in f: source)"."""
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
    return text


def describe_call_error(e, path, row, args):
    text = describe_exception(e, path)
    if row is None:
        return text + " [in batch mode, on the whole batch]"
    text += " [row %d of the batch" % row
    if args is not None:
        text += ", arguments %s" % short_repr(tuple(args))
    return text + "]"


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
        if self.count <= LOGGED_ROW_ERRORS:
            sys.stderr.write("kiln_runner: row %d failed and was returned as NULL (on_error='null'): "
                             "%s\n" % (self.first_row + row, text))

    def finish(self):
        if self.count > LOGGED_ROW_ERRORS:
            sys.stderr.write("kiln_runner: %d more rows of the batch at row %d failed and were "
                             "returned as NULL\n" % (self.count - LOGGED_ROW_ERRORS, self.first_row))


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
                raise BatchError(describe_call_error(e, path, None, None))
            text = describe_exception(e, path)
            for i in range(rows):
                errors.add(selected[i] if selected is not None else i, text)
            return [None] * rows
        try:
            out = list(out)
        except TypeError:
            raise BatchError("in batch mode the function must return a list with one value per "
                             "row, but it returned %s %s" % (type(out).__name__, short_repr(out)))
        if len(out) != rows:
            raise BatchError("in batch mode the function must return one value per row: it got %d "
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
                    raise BatchError(describe_call_error(e, path, row_of(i), args))
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
                raise BatchError(describe_call_error(e, path, row_of(row), args))
        counter = iter(range(rows))
        try:
            return [func() for _ in counter]
        except MemoryError:
            raise
        except BaseException as e:
            row = rows - 1 - counter.__length_hint__()
            raise BatchError(describe_call_error(e, path, row_of(row), None))

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
            type(b.value).__name__, short_repr(b.value), row, label(t), expected_python(t))
    else:
        what = "None" if b.value is None else "%s %s" % (type(b.value).__name__, short_repr(b.value))
        text = ("the function returned %s for row %d, but the result type is %s: the value at %s "
                "is %s, which %s cannot hold (expected %s)" % (
                    short_repr(results[b.index]), row, label(t), b.path, what, label(b.t),
                    "NULL" if b.value is None else expected_python(b.t)))
    if b.extra:
        text += ": " + b.extra
    return text


def bad_result(b, results, t, first_row, udf, errors):
    """A result value the type cannot hold: the call's error, or with on_error="null" a NULL."""
    message = bad_value_message(b, results, t, first_row)
    if errors is None:
        raise BatchError(message)
    results[b.index] = None
    errors.add(b.index, message)


def null_every_bad_result(results, t, first_row, errors, encode_column):
    """Many bad values: finds them all in one pass (with encode_column, kiln_columns.encode_column)
    instead of one encode per value."""
    for i, v in enumerate(results):
        if v is not None:
            try:
                encode_column([v], t)
            except Bad as b:
                b.index = i
                errors.add(i, bad_value_message(b, results, t, first_row))
                results[i] = None
