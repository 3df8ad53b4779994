"""Kiln's stand-in for the databend-udf package, so code written for it runs unchanged.

Under Kiln the worker serves the function: this module only records what the decorator says.
The runner (kiln_runner.py) finds the decorated handler, reads its options and honours them:

    from databend_udf import udf

    @udf(input_types=["INT"], result_type="INT", skip_null=True)
    def add_one(x):
        return x + 1

Options:
  input_types, result_type  checked against the function's SQL signature when it loads
  name                      the SQL name; a handler may name the function by it
  skip_null                 a NULL argument gives a NULL result without calling the function
  batch_mode                the function gets whole columns (lists) and returns a list
  io_threads                rows are computed on a pool of this many threads (I/O-bound
                            functions); unlike databend-udf the default is no pool, since
                            Kiln already runs one process per core
  on_error                  "null": a row whose call fails becomes NULL (Kiln only);
                            the default fails the whole call with the Python error
  max_concurrency, concurrency_timeout, stage_refs
                            accepted for compatibility; stage_refs must be empty

JSON_NULL (Kiln only) is JSON null as a VARIANT value, apart from None (SQL NULL): a VARIANT
argument holding JSON null arrives as JSON_NULL, and returning JSON_NULL gives JSON null where
returning None gives SQL NULL. Inside a list or dict parsed from JSON, null is None (and either
one gives null in a result):

    from databend_udf import JSON_NULL

    def is_json_null(v):
        return v is JSON_NULL

Standard library only (and the runner's kiln_wire, already loaded); imported only by UDF code that
asks for it.
"""

from kiln_wire import JSON_NULL, JsonNull

__all__ = ["udf", "UDFServer", "ScalarFunction", "UserDefinedFunction", "JSON_NULL", "JsonNull"]


class UserDefinedFunction:
    """Base class of decorated functions, as in databend-udf."""

    _name = None


class ScalarFunction(UserDefinedFunction):
    """A decorated scalar function: still callable, and carries its options for the runner."""

    def __init__(self, func, input_types, result_type, name=None, io_threads=None,
                 skip_null=False, batch_mode=False, on_error=None):
        if not callable(func):
            raise TypeError("@udf decorates a function, got %s" % type(func).__name__)
        inputs = input_types if isinstance(input_types, (list, tuple)) else [input_types]
        if on_error not in (None, "raise", "null"):
            raise ValueError("on_error must be 'raise' or 'null', got %r" % (on_error,))
        if io_threads is not None and (not isinstance(io_threads, int) or io_threads < 0):
            raise ValueError("io_threads must be a non-negative int, got %r" % (io_threads,))
        self._func = func
        self._name = name or getattr(func, "__name__", type(func).__name__)
        self.__name__ = getattr(func, "__name__", self._name)
        self.__doc__ = getattr(func, "__doc__", None)
        self.__wrapped__ = func
        self._kiln_options = {
            "func": func,
            "name": self._name,
            "skip_null": bool(skip_null),
            "batch_mode": bool(batch_mode),
            "io_threads": io_threads if io_threads and io_threads > 1 else 0,
            "on_error": on_error,
            "declared": {"input_types": [_type_text(t) for t in inputs],
                         "result_type": _type_text(result_type)},
        }

    def __call__(self, *args, **kwargs):
        return self._func(*args, **kwargs)

    def __repr__(self):
        return "<databend_udf function %s>" % self._name


def _type_text(t):
    return t if isinstance(t, str) else str(t)


def udf(input_types, result_type, name=None, stage_refs=None, io_threads=None, skip_null=False,
        batch_mode=False, max_concurrency=None, concurrency_timeout=None, on_error=None):
    """Declares a scalar UDF (see the module documentation for the options)."""
    if isinstance(result_type, (list, tuple)):
        raise TypeError("table functions (a list of result columns) are not supported by Kiln; "
                        "declare a single result_type")
    if stage_refs:
        raise ValueError("stage_refs are not supported by Kiln; read staged files through the "
                         "function's IMPORTS instead")

    def decorator(func):
        return ScalarFunction(func, input_types, result_type, name=name, io_threads=io_threads,
                              skip_null=skip_null, batch_mode=batch_mode, on_error=on_error)

    return decorator


class UDFServer:
    """Accepts functions like databend-udf's server; under Kiln the worker serves them."""

    def __init__(self, location="0.0.0.0:8815", metric_location=None, **kwargs):
        self._location = location
        self._functions = {}

    def add_function(self, function):
        name = getattr(function, "_name", None) or getattr(function, "__name__", "?")
        self._functions[name] = function

    def serve(self):
        raise RuntimeError("under Kiln the worker serves the UDF; do not start a UDFServer in the "
                           "function's code (guard it with: if __name__ == '__main__':)")
